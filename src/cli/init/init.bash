# cli-guard's shell integration for bash, printed by `cli-guard init bash`.
# Load it from ~/.bashrc (install.sh --rc writes that line):
#     eval "$(cli-guard init bash)"
#
# - A function for each guarded name, exported with `export -f`, so that the
#   name typed here, run by a script this shell sources, or run by a child
#   bash (`bash -c '...'`, as coding agents start commands) meets the gate
#   whatever comes first on PATH. The shim then runs what PATH would have
#   given without cli-guard (an activated virtualenv's pip, nvm's npm).
# - A prompt hook that moves the shims directory back to the front of PATH
#   when something put a directory before it (a virtualenv's activate,
#   `nvm use`), so that programs which look names up themselves (make's
#   recipes, Python's subprocess, npm scripts) meet the shims too.
# Pure bash: no process is started at a prompt, and the hook returns at once
# when the shims already lead PATH. Safe under `set -u`, and to load twice.

# NAME ARGS...: NAME without the gate, for a shell that outlived its shims
# (cli-guard uninstalled under it), saying so.
function __cli_guard_gone {
    printf 'cli-guard: %s is gone, so %s runs without the gate; open a new shell (cli-guard was uninstalled?)\n' \
        '@SHIMS@'/"$1" "$1" >&2
    command "$@"
}

# The prompt hook: returns at once, the exit status untouched, when the
# shims directory leads PATH (no local variable, no expansion but PATH's);
# else puts it first.
function __cli_guard_front {
    case ${PATH-} in
        '@SHIMS@' | '@SHIMS@':*) return ;;
        *) __cli_guard_repath "$?" ;;
    esac
}

# STATUS: the shims directory first on PATH, every other entry kept in its
# order (a second copy of the shims dropped); returns STATUS, so that what
# runs after the hook sees the command's.
function __cli_guard_repath {
    local dir='@SHIMS@' rest
    if [[ -z ${PATH-} ]]; then
        PATH=$dir
        return "$1"
    fi
    rest=:$PATH:
    while [[ $rest == *:"$dir":* ]]; do
        rest=${rest//:"$dir":/:}
    done
    rest=${rest#:}
    PATH=$dir:${rest%:}
    return "$1"
}

# Each name: its shim with argv[0] = the name, as typed. `exec -a` in a
# subshell is one fork and one exec, what running any command costs (and
# `jobs` shows which shim runs). `function NAME` rather than `NAME()`: an
# alias of that name (alias pip=pip3) is not expanded in it. The shims
# directory is spelled out in each body, so that an exported function
# works in a child bash without any variable.
printf -v __cli_guard_shims %q '@SHIMS@'
for __cli_guard_name in @NAMES@; do
    eval "function $__cli_guard_name {
        if [[ -x $__cli_guard_shims/$__cli_guard_name ]]; then
            (exec -a $__cli_guard_name $__cli_guard_shims/$__cli_guard_name \"\$@\")
        else
            __cli_guard_gone $__cli_guard_name \"\$@\"
        fi
    }"
    export -f "${__cli_guard_name?}"
done
unset __cli_guard_name __cli_guard_shims
export -f __cli_guard_gone

# PROMPT_COMMAND is an array since bash 5.1: the hook is one more element,
# after those of tools that put theirs first (direnv, mise), so it runs last.
# Before 5.1 only a string runs: the hook goes on a line of its own.
if ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))); then
    case " ${PROMPT_COMMAND[*]-} " in
        *__cli_guard_front*) ;;
        *) PROMPT_COMMAND+=(__cli_guard_front) ;;
    esac
else
    # A string before 5.1, whatever was assigned to it.
    # shellcheck disable=SC2128,SC2178
    case ${PROMPT_COMMAND-} in
        *__cli_guard_front*) ;;
        *) PROMPT_COMMAND=${PROMPT_COMMAND:+$PROMPT_COMMAND$'\n'}__cli_guard_front ;;
    esac
fi

# Which shell loaded this, for `cli-guard doctor`.
export CLI_GUARD_SHELL_INIT="bash $$"
__cli_guard_front
