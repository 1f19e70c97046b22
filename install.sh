#!/bin/sh
# install.sh: build cli-guard and put its shims in front of your tools.
#
#   ./install.sh [--prefix DIR] [--rc]     install (default prefix: ~/.local);
#                                          --rc: load the shell integration from
#                                          your shell's start-up file
#   sudo ./install.sh --prefix DIR --apparmor
#                                          let DIR/bin/cli-guard make user namespaces
#   ./install.sh [--prefix DIR] --uninstall
#
# POSIX sh. All logic is in functions and `main "$@"` is the last line, so a
# truncated download runs nothing. Everything install creates is listed in
# DIR/share/cli-guard/manifest; uninstall removes exactly that (and the one
# line --rc added), and install never overwrites a file it did not create.
#
# CLI_GUARD_INSTALL_APPARMOR_DIR replaces /etc/apparmor.d, for the tests
# only (tests/gate/install.rs), so that --apparmor can write into a
# directory of theirs; nothing else reads it.
set -eu

PROG=install.sh
RC_MARK='# added by cli-guard install.sh'
APPARMOR_DIR=${CLI_GUARD_INSTALL_APPARMOR_DIR:-/etc/apparmor.d}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

warn() {
    printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
usage: $PROG [--prefix DIR] [--rc]
       $PROG [--prefix DIR] --apparmor
       $PROG [--prefix DIR] --uninstall

Builds cli-guard (cargo build --release --locked) and installs:
  DIR/bin/cli-guard                  the binary
  DIR/bin/egress-demo                a link to it
  DIR/share/cli-guard/shims/NAME     a link to it for every guarded tool (a hard
                                     link for python and python3)
Then prints the line that loads cli-guard's shell integration (cli-guard init:
a function for each guarded name, and a prompt hook that keeps the shims first
on PATH, so that an activated virtualenv or nvm's node still meets the gate).

options:
  --prefix DIR   where to install (default: \$HOME/.local)
  --rc           also add that line to your shell's start-up file, once
                 (bash: ~/.bashrc; zsh: ~/.zshenv, which every zsh reads;
                 fish: ~/.config/fish/config.fish)
  --apparmor     after installing, as root: let DIR/bin/cli-guard make the user
                 namespaces strict mode needs where AppArmor restricts them
                 (Ubuntu 23.10 and later): writes $APPARMOR_DIR/cli-guard and
                 loads it with apparmor_parser. Builds nothing; without
                 AppArmor it is not needed and does nothing
  --uninstall    remove exactly what install put there, nothing else
                 (the AppArmor profile too, when run as root)
  -h, --help     this help
EOF
}

# The source checkout this script lives in.
source_dir() {
    dir=$(cd "$(dirname "$0")" && pwd) || die "cannot find the directory of $0"
    if [ ! -f "$dir/Cargo.toml" ] || [ ! -d "$dir/src" ]; then
        die "$dir is not a cli-guard checkout: run install.sh from the repository"
    fi
    printf '%s\n' "$dir"
}

# Whether install.sh created PATH (it is listed in the manifest).
is_ours() {
    [ -f "$manifest" ] && grep -Fqx -- "$1" "$manifest"
}

# Records PATH in the manifest, once.
remember() {
    is_ours "$1" || printf '%s\n' "$1" >>"$manifest"
}

# Whether PATH is a symlink to TARGET.
links_to() {
    [ -L "$1" ] && [ "$(readlink "$1")" = "$2" ]
}

# Creates (or repairs) the symlink PATH -> TARGET, unless PATH is something
# install.sh did not create.
place_link() {
    path=$1
    target=$2
    if links_to "$path" "$target"; then
        remember "$path"
        return 0
    fi
    if [ -e "$path" ] || [ -L "$path" ]; then
        is_ours "$path" ||
            die "$path exists and was not created by $PROG; not overwriting it. Remove it, or choose another --prefix."
        rm -f "$path"
    fi
    ln -s "$target" "$path"
    remember "$path"
}

# Creates (or repairs) PATH as a hard link to the installed binary (a copy
# where the two are on different filesystems), unless PATH is something
# install.sh did not create. The python shims are hard links, not symlinks:
# a program that resolves an interpreter's links and runs what it finds (uv,
# virtualenv, pdm's findpython) then runs the shim by its own name, which
# stays `python3`, rather than cli-guard under its own.
place_hardlink() {
    path=$1
    binary=$bin_dir/cli-guard
    if { [ -e "$path" ] || [ -L "$path" ]; } && ! is_ours "$path"; then
        die "$path exists and was not created by $PROG; not overwriting it. Remove it, or choose another --prefix."
    fi
    # Made again on every install, since the binary was just replaced by a
    # new file; by rename, as the binary is, so that a shim running right
    # now keeps its old file.
    tmp=$shims_dir/.${path##*/}.install.$$
    if ln "$binary" "$tmp" 2>/dev/null; then
        :
    elif cp "$binary" "$tmp"; then
        warn "$shims_dir and $bin_dir are on different filesystems: ${path##*/} is a copy of cli-guard, not a hard link ('cli-guard shims' will not recognise it as a shim)"
    else
        rm -f "$tmp"
        die "cannot install $path"
    fi
    if ! mv -f "$tmp" "$path"; then
        rm -f "$tmp"
        die "cannot install $path"
    fi
    remember "$path"
}

# Whether NAME's shim is a hard link: the python names (PYTHON_SHIMS in
# src/shim/python.rs, and any pythonX.Y).
is_interpreter() {
    case $1 in
        python | python[0-9] | python[0-9].[0-9]*) return 0 ;;
        *) return 1 ;;
    esac
}

need_cargo() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found on PATH. Install Rust (https://rustup.rs or your package manager), then run $PROG again."
}

# Makes the install directories, or says why it can't. Remembers the ones
# it creates (in $created) so that uninstall can remove them again.
make_dirs() {
    created=
    for dir in "$prefix" "$bin_dir" "$prefix/share" "$share_dir" "$shims_dir"; do
        [ -d "$dir" ] || created="$created
$dir"
    done
    for dir in "$bin_dir" "$shims_dir"; do
        if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
            die "cannot write to $dir. Choose a --prefix you can write to (the default is ~/.local), or fix its permissions."
        fi
    done
}

build() {
    say "building the release binary (cargo build --release --locked)"
    (cd "$src" && cargo build --release --locked) || die "the build failed (see cargo's output above)"
    target_dir=${CARGO_TARGET_DIR:-$src/target}
    case $target_dir in
        /*) ;;
        *) target_dir=$src/$target_dir ;;
    esac
    built=$target_dir/release/cli-guard
    [ -x "$built" ] || die "the build did not produce $built"
}

# Copies the binary into place by rename, so a shim running right now keeps
# its old file and never sees a half-written one.
install_binary() {
    dest=$bin_dir/cli-guard
    if [ -e "$dest" ] && ! is_ours "$dest"; then
        die "$dest exists and was not installed by $PROG; not overwriting it. Remove it, or choose another --prefix."
    fi
    tmp=$bin_dir/.cli-guard.install.$$
    if ! { cp "$built" "$tmp" && chmod 0755 "$tmp" && mv -f "$tmp" "$dest"; }; then
        rm -f "$tmp"
        die "cannot install $dest"
    fi
    remember "$dest"
}

# Shims for names the policy no longer has, left by an older install.
remove_stale_shims() {
    for path in "$shims_dir"/* "$shims_dir"/.[!.]*; do
        [ -L "$path" ] || [ -f "$path" ] || continue
        name=${path##*/}
        printf '%s\n' "$names" | grep -Fqx -- "$name" && continue
        if is_ours "$path"; then
            rm -f "$path"
            say "removed stale shim $name"
        fi
    done
}

# The line that puts the shims first on PATH, in the syntax of SHELL_NAME:
# for a shell without cli-guard's integration, and the line --rc wrote
# before it had one (which --rc and --uninstall still remove).
path_line() {
    # $PATH is meant literally: it is expanded by the user's shell later.
    # shellcheck disable=SC2016
    case $1 in
        fish) printf 'set -gx PATH %s $PATH\n' "$shims_dir" ;;
        *) printf 'export PATH="%s:$PATH"\n' "$shims_dir" ;;
    esac
}

# The line that loads cli-guard's shell integration (`cli-guard init`) in
# SHELL_NAME: what --rc writes. The prefix has no quote or backslash (main
# refuses them), so single quotes hold it as it is.
init_line() {
    # $(...) is meant literally: the user's shell runs it later.
    # shellcheck disable=SC2016
    case $1 in
        fish) printf "'%s' init fish | source\n" "$bin_dir/cli-guard" ;;
        *) printf 'eval "$('"'%s'"' init %s)"\n' "$bin_dir/cli-guard" "$1" ;;
    esac
}

shell_name() {
    printf '%s\n' "${SHELL:-sh}" | sed 's|.*/||'
}

# The start-up file of SHELL_NAME, or nothing for a shell we don't know:
# bash's for interactive shells; zsh's that every zsh reads, `zsh -c`
# included; fish's, which every fish reads.
rc_file() {
    case $1 in
        bash) printf '%s\n' "$HOME/.bashrc" ;;
        zsh) printf '%s\n' "${ZDOTDIR:-$HOME}/.zshenv" ;;
        fish) printf '%s\n' "${XDG_CONFIG_HOME:-$HOME/.config}/fish/config.fish" ;;
    esac
}

# Where an earlier install.sh --rc put its PATH line.
old_rc_file() {
    case $1 in
        zsh) printf '%s\n' "${ZDOTDIR:-$HOME}/.zshrc" ;;
        *) rc_file "$1" ;;
    esac
}

# Removes the line LINE from FILE, if it is there, keeping everything else
# byte for byte.
remove_line() {
    if [ ! -f "$2" ] || ! grep -Fqx -- "$1" "$2"; then
        return 1
    fi
    tmp=$2.cli-guard.$$
    grep -Fvx -- "$1" "$2" >"$tmp" || true
    cat "$tmp" >"$2" && rm -f "$tmp"
}

add_rc_line() {
    shell=$(shell_name)
    rc=$(rc_file "$shell")
    [ -n "$rc" ] || die "--rc knows bash, zsh and fish, not '$shell'. Add this line to your shell's start-up file yourself: $(path_line sh)"
    # An earlier install's PATH line: the integration takes its place.
    if remove_line "$(path_line "$shell") $RC_MARK" "$(old_rc_file "$shell")"; then
        say "removed the PATH line an earlier install.sh --rc wrote to $(old_rc_file "$shell")"
    fi
    line="$(init_line "$shell") $RC_MARK"
    if [ -f "$rc" ] && grep -Fqx -- "$line" "$rc"; then
        say "$rc already loads cli-guard's shell integration"
        return 0
    fi
    mkdir -p "$(dirname "$rc")"
    # A start-up file install made, uninstall removes again once it is empty.
    [ -e "$rc" ] || remember "rc:$rc"
    # Only a file without a final newline needs one before our line; adding
    # nothing else keeps --uninstall able to restore it byte for byte.
    if [ -s "$rc" ] && [ -n "$(tail -c 1 "$rc")" ]; then
        printf '\n' >>"$rc"
    fi
    printf '%s\n' "$line" >>"$rc"
    say "added the line that loads cli-guard's shell integration to $rc; open a new shell (or run: $(init_line "$shell"))"
}

remove_rc_lines() {
    for shell in bash zsh fish; do
        rc=$(rc_file "$shell")
        if remove_line "$(init_line "$shell") $RC_MARK" "$rc"; then
            say "removed the shell integration's line from $rc"
        fi
        old=$(old_rc_file "$shell")
        if remove_line "$(path_line "$shell") $RC_MARK" "$old"; then
            say "removed the PATH line from $old"
        fi
    done
    # The start-up files install created, if nothing else was written to them.
    printf '%s\n' "$recorded" | sed -n 's/^rc://p' | while IFS= read -r rc; do
        if [ -f "$rc" ] && [ ! -s "$rc" ]; then
            rm -f "$rc"
        fi
    done
}

# Warns when a real tool sits on PATH before the shims (the shim is then
# bypassed), or when the shims are not on PATH at all.
check_path_order() {
    case ":${PATH:-}:" in
        *":$shims_dir:"*) ;;
        *)
            shell=$(shell_name)
            rc=$(rc_file "$shell")
            if [ -n "$rc" ] && [ "$rc_wanted" != 1 ]; then
                say "to put the gate in front of your tools in every $shell, add this line to $rc (or rerun with --rc):"
                printf '\n    %s\n\n' "$(init_line "$shell")"
                say "or, for this shell only: $(path_line "$shell")"
            elif [ -z "$rc" ]; then
                say "to use the shims, put them first on PATH (add this to your shell's start-up file):"
                printf '\n    %s\n\n' "$(path_line "$shell")"
            fi
            return 0
            ;;
    esac
    early=
    rest=$PATH
    while [ -n "$rest" ]; do
        dir=${rest%%:*}
        case $rest in *:*) rest=${rest#*:} ;; *) rest= ;; esac
        [ "$dir" = "$shims_dir" ] && break
        for name in $names; do
            if [ -x "$dir/$name" ] && [ ! -d "$dir/$name" ]; then
                early="$early $dir/$name"
            fi
        done
    done
    if [ -n "$early" ]; then
        warn "these come before the shims on PATH, so they bypass the gate:$early"
        warn "put the shims directory first: $(path_line "$(shell_name)")"
    else
        say "the shims are first on PATH"
    fi
}

install_all() {
    src=$(source_dir)
    need_cargo
    make_dirs
    build
    install_binary
    names=$("$bin_dir/cli-guard" policy --names) || die "$bin_dir/cli-guard does not run"
    place_link "$bin_dir/egress-demo" cli-guard
    for name in $names; do
        if is_interpreter "$name"; then
            place_hardlink "$shims_dir/$name"
        else
            place_link "$shims_dir/$name" "$bin_dir/cli-guard"
        fi
    done
    remove_stale_shims
    printf '%s\n' "$created" | while IFS= read -r dir; do
        if [ -n "$dir" ]; then
            remember "dir:$dir"
        fi
    done
    remember "$manifest"
    say "installed $bin_dir/cli-guard, $bin_dir/egress-demo and $(printf '%s\n' "$names" | wc -l | tr -d ' ') shims in $shims_dir"
    [ "$rc_wanted" = 1 ] && add_rc_line
    check_path_order
}

uninstall_all() {
    [ -f "$manifest" ] || die "nothing to uninstall: no manifest at $manifest (was cli-guard installed with --prefix $prefix?)"
    recorded=$(cat "$manifest")
    remove_apparmor
    while IFS= read -r path; do
        [ -n "$path" ] || continue
        [ "$path" = "$manifest" ] && continue
        case $path in dir:* | apparmor:* | rc:*) continue ;; esac
        if [ -L "$path" ]; then
            target=$(readlink "$path")
            if [ "$target" = "$bin_dir/cli-guard" ] || [ "$target" = cli-guard ]; then
                rm -f "$path"
            else
                warn "left $path: it no longer points to cli-guard"
            fi
        elif [ -f "$path" ]; then
            rm -f "$path"
        fi
    done <<EOF
$recorded
EOF
    if [ -n "$apparmor_left" ]; then
        # Keep listing what is left, for the uninstall as root.
        {
            printf '%s\n' "$recorded" | grep '^dir:' || true
            printf '%s\n' "$apparmor_left" | sed '/^$/d'
            printf '%s\n' "$manifest"
        } >"$manifest.new"
        mv -f "$manifest.new" "$manifest"
    else
        rm -f "$manifest"
    fi
    rmdir "$shims_dir" "$share_dir" 2>/dev/null || true
    # The directories install created, deepest first, if nothing else is in them.
    printf '%s\n' "$recorded" | sed -n 's/^dir://p' | sort -r | while IFS= read -r dir; do
        rmdir "$dir" 2>/dev/null || true
    done
    remove_rc_lines
    say "uninstalled cli-guard from $prefix"
}

# The AppArmor profile that lets the binary at $1 make user namespaces and
# confines it in nothing else: the AppArmor 4 form Ubuntu 24.04 ships for
# the programs that need them (chrome, for one).
apparmor_profile() {
    cat <<PROFILE
# Written by cli-guard's install.sh --apparmor; removed by its --uninstall.
# Lets cli-guard's strict mode make its user and network namespace where
# kernel.apparmor_restrict_unprivileged_userns is 1. Nothing else is confined.
abi <abi/4.0>,
include <tunables/global>

profile cli-guard "$1" flags=(unconfined) {
  userns,

  include if exists <local/cli-guard>
}
PROFILE
}

apparmor_all() {
    profile=$APPARMOR_DIR/cli-guard
    if [ ! -d "$APPARMOR_DIR" ] || ! command -v apparmor_parser >/dev/null 2>&1; then
        say "AppArmor is not installed here ($APPARMOR_DIR or apparmor_parser is missing), so no profile is needed; 'cli-guard doctor' says whether strict mode works"
        return 0
    fi
    binary=$bin_dir/cli-guard
    if ! is_ours "$binary" || [ ! -x "$binary" ]; then
        die "$binary was not installed by $PROG: install first ($0 --prefix $prefix), then run --apparmor"
    fi
    # AppArmor attaches a profile to the executable's own path, symlinks
    # resolved (the shims are symlinks to it).
    real=$(cd "$bin_dir" && pwd -P)/cli-guard
    case $real in
        *[\"\\*?{}^#]* | *\[* | *\]* | *"
"*) die "$real has a character an AppArmor profile path cannot take literally; install with another --prefix" ;;
    esac
    if [ "$(id -u)" != 0 ]; then
        say "writing $profile needs root; run:"
        printf '\n    sudo %s --prefix %s --apparmor\n\n' "$0" "$prefix"
        exit 1
    fi
    if [ -e "$profile" ] && ! is_ours "apparmor:$profile"; then
        die "$profile exists and was not written by $PROG; not overwriting it"
    fi
    tmp=$profile.install.$$
    if ! { apparmor_profile "$real" >"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$profile"; }; then
        rm -f "$tmp"
        die "cannot write $profile"
    fi
    remember "apparmor:$profile"
    apparmor_parser -r "$profile" ||
        die "apparmor_parser could not load $profile (see its message above); it stays listed for --uninstall"
    say "wrote and loaded $profile: $real may make user namespaces"
    restrict=$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || true)
    if [ "$restrict" != 1 ]; then
        say "(kernel.apparmor_restrict_unprivileged_userns is not 1 here, so strict mode does not need the profile yet; it will if that is turned on)"
    fi
}

# Removes the AppArmor profiles the manifest lists (unloading them first),
# as root; as anyone else, leaves them and says what to run. Sets
# $apparmor_left to the manifest lines still needed for them.
remove_apparmor() {
    apparmor_left=
    entries=$(sed -n 's/^apparmor://p' "$manifest")
    while IFS= read -r entry; do
        if [ -z "$entry" ] || [ ! -e "$entry" ]; then
            continue
        fi
        if [ "$(id -u)" != 0 ]; then
            warn "left $entry: removing an AppArmor profile needs root; run: sudo $0 --prefix $prefix --uninstall"
            apparmor_left="$apparmor_left
apparmor:$entry"
            continue
        fi
        if command -v apparmor_parser >/dev/null 2>&1; then
            apparmor_parser -R "$entry" >/dev/null 2>&1 ||
                warn "apparmor_parser could not unload $entry; removing the file anyway"
        fi
        rm -f "$entry"
        say "removed the AppArmor profile $entry"
    done <<LIST
$entries
LIST
}

main() {
    prefix=
    rc_wanted=0
    action=install
    while [ $# -gt 0 ]; do
        case $1 in
            --prefix)
                [ $# -ge 2 ] || die "--prefix needs a directory"
                prefix=$2
                shift 2
                ;;
            --prefix=*)
                prefix=${1#--prefix=}
                shift
                ;;
            --rc)
                rc_wanted=1
                shift
                ;;
            --uninstall)
                action=uninstall
                shift
                ;;
            --apparmor)
                action=apparmor
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown argument '$1' (see $PROG --help)" ;;
        esac
    done
    if [ -z "$prefix" ]; then
        [ -n "${HOME:-}" ] || die "HOME is not set: pass --prefix DIR"
        prefix=$HOME/.local
    fi
    case $prefix in
        /*) ;;
        *) prefix=$(pwd)/$prefix ;;
    esac
    case $prefix in
        *[\"\$\`\\\']* | *"
"*) die "--prefix must not contain quotes, \$, backticks, backslashes or newlines (it goes into a shell start-up line)" ;;
    esac
    bin_dir=$prefix/bin
    share_dir=$prefix/share/cli-guard
    shims_dir=$share_dir/shims
    manifest=$share_dir/manifest
    case $action in
        install) install_all ;;
        uninstall) uninstall_all ;;
        apparmor) apparmor_all ;;
    esac
}

main "$@"
