# cli-guard's shell integration for fish, printed by `cli-guard init fish`.
# Load it from ~/.config/fish/config.fish, which every fish reads, `fish -c`
# included (install.sh --rc writes that line):
#     cli-guard init fish | source
#
# A handler on every change of PATH (and before each prompt) that moves the
# shims directory back to the front when something put a directory before
# it: fish runs it the moment a virtualenv's activate.fish, nvm or
# fish_add_path changes PATH, in the same command line too, so every name
# typed, and every program that looks one up (make's recipes, Python's
# subprocess, npm scripts), meets the shims; the shim then runs what PATH
# would have given without cli-guard (the virtualenv's pip, nvm's npm).
#
# No function for each name, unlike bash and zsh: fish runs a function in
# the foreground even when asked to run it in the background, so
# `npm install &` would block, as would fish's own first-run job that runs
# python in the background; and the handler already keeps the shims first.
#
# Pure fish: no process is started, and the handler returns at once when
# the shims already lead PATH (as they do again after it changed PATH
# itself). Safe to load twice.

# The handler: returns at once when the shims directory leads PATH; else
# puts it first, every other entry kept in its order (a second copy of the
# shims dropped).
function __cli_guard_front --on-variable PATH --on-event fish_prompt --description 'cli-guard: the shims first on PATH'
    test "$PATH[1]" = '@SHIMS@'; and return
    set -l rest
    for entry in $PATH
        test "$entry" = '@SHIMS@'; or set -a rest $entry
    end
    set -gx PATH '@SHIMS@' $rest
end

# Which shell loaded this, for `cli-guard doctor`.
set -gx CLI_GUARD_SHELL_INIT "fish $fish_pid"
__cli_guard_front
