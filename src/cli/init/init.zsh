# cli-guard's shell integration for zsh, printed by `cli-guard init zsh`.
# Load it from ~/.zshenv, which every zsh reads, `zsh -c` included
# (install.sh --rc writes that line):
#     eval "$(cli-guard init zsh)"
#
# - A function for each guarded name, so that the name typed here, or run by
#   any zsh (zsh passes no functions to children, but every zsh reads
#   ~/.zshenv), meets the gate whatever comes first on PATH. The shim then
#   runs what PATH would have given without cli-guard (an activated
#   virtualenv's pip, nvm's npm).
# - A hook before each prompt (precmd) and before each command line runs
#   (preexec, after every other tool's precmd hook) that moves the shims
#   directory back to the front of PATH when something put a directory before
#   it, so that programs which look names up themselves (make's recipes,
#   Python's subprocess, npm scripts) meet the shims too.
# Pure zsh: no process is started at a prompt, and the hook returns at once
# when the shims already lead PATH. Independent of the user's options
# (emulate -L zsh), and safe to load twice.

# NAME ARGS...: NAME's shim with argv[0] = NAME, as typed.
function __cli_guard_call {
    emulate -L zsh
    local name=$1 shim='@SHIMS@'/$1
    shift
    if [[ -x $shim ]]; then
        ARGV0=$name $shim "$@"
    else
        print -ru2 -- "cli-guard: $shim is gone, so $name runs without the gate; open a new shell (cli-guard was uninstalled?)"
        command $name "$@"
    fi
}

# The hook: returns at once, the exit status untouched, when the shims
# directory leads PATH (a pattern on PATH's text, whatever the user's
# options); else puts it first.
function __cli_guard_front {
    case ${PATH-} in
        '@SHIMS@' | '@SHIMS@':*) return ;;
        *) __cli_guard_repath $? ;;
    esac
}

# STATUS: the shims directory first on PATH, every other entry kept in its
# order (a second copy of the shims dropped); returns STATUS.
function __cli_guard_repath {
    emulate -L zsh
    local dir='@SHIMS@'
    # ${array:#pattern} drops every entry equal to $dir: without GLOB_SUBST
    # (emulate -L zsh), a parameter's value in a pattern matches literally.
    path=("$dir" "${(@)path:#$dir}")
    return $1
}

() {
    emulate -L zsh
    local name
    for name in @NAMES@; do
        functions[$name]="__cli_guard_call $name \"\$@\""
    done
    autoload -Uz add-zsh-hook
    add-zsh-hook precmd __cli_guard_front
    add-zsh-hook preexec __cli_guard_front
}

# Which shell loaded this, for `cli-guard doctor`.
export CLI_GUARD_SHELL_INIT="zsh $$"
__cli_guard_front
