# cli-guard's shell integration for fish, printed by `cli-guard init fish`.
# Load it from ~/.config/fish/config.fish, which every fish reads, `fish -c`
# included (install.sh --rc writes that line):
#     cli-guard init fish | source
#
# - A function for each guarded name, so that the name typed here, or run by
#   any fish, meets the gate whatever comes first on PATH. The shim then runs
#   what PATH would have given without cli-guard (an activated virtualenv's
#   pip, nvm's npm).
# - A handler on every change of PATH (and before each prompt) that moves the
#   shims directory back to the front when something put a directory before
#   it, so that programs which look names up themselves (make's recipes,
#   Python's subprocess, npm scripts) meet the shims too, from the moment
#   a virtualenv's activate.fish changes PATH.
# Pure fish: no process is started, and the handler returns at once when the
# shims already lead PATH (as they do again after it changed PATH itself).
# Safe to load twice.

# NAME ARGS...: NAME's shim. Found by name while the shims lead PATH, so
# that argv[0] is NAME as typed; fish cannot set argv[0] otherwise, so the
# shim's path is argv[0] in the rare moment they do not.
function __cli_guard_call --description 'run a name through its cli-guard shim'
    set -l name $argv[1]
    set -e argv[1]
    set -l shim '@SHIMS@'/$name
    if not test -x $shim
        echo "cli-guard: $shim is gone, so $name runs without the gate; open a new shell (cli-guard was uninstalled?)" >&2
        command $name $argv
    else if test "$PATH[1]" = '@SHIMS@'
        command $name $argv
    else
        $shim $argv
    end
end

# The handler: the shims directory first on PATH, every other entry kept in
# its order.
function __cli_guard_front --on-variable PATH --on-event fish_prompt --description 'cli-guard: the shims first on PATH'
    set -l dir '@SHIMS@'
    test "$PATH[1]" = $dir; and return
    set -l rest
    for entry in $PATH
        test "$entry" = $dir; or set -a rest $entry
    end
    set -gx PATH $dir $rest
end

for __cli_guard_name in @NAMES@
    function $__cli_guard_name --inherit-variable __cli_guard_name --wraps $__cli_guard_name --description "$__cli_guard_name, through cli-guard"
        __cli_guard_call $__cli_guard_name $argv
    end
end
set -e __cli_guard_name

# Which shell loaded this, for `cli-guard doctor`.
set -gx CLI_GUARD_SHELL_INIT "fish $fish_pid"
__cli_guard_front
