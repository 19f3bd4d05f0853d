# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for fdbrokerctl: commands, options (global and per command),
# option values where there is a fixed set or a path, and entry names, which come
# from `fdbrokerctl list` run quietly against the --socket on the command line
# (else $FDBROKER_SOCKET or the default); an unreachable broker completes nothing.
# Installed as completions/fdbrokerctl, where bash-completion loads it on demand.
#
# The commands and options below mirror `fdbrokerctl --help`;
# tests/python/test_completion.py fails when they drift apart.
#
# COMPREPLY=($(compgen ...)), bash-completion's own idiom: every word offered here
# (commands, options, entry names, URL schemes) is free of blanks and glob characters.
# shellcheck disable=SC2207

_fdbrokerctl_commands="hello list get take put delete stats upgrade open exec"

# The options COMMAND accepts; no argument: the global ones.
_fdbrokerctl_options() {
    case ${1-} in
    "") echo "--socket --timeout --json --help --version" ;;
    list) echo "--limit" ;;
    get | take) echo "--wait" ;;
    put) echo "--fd --file --mode --listen --meta --ttl --replace --expect-generation" ;;
    stats) echo "--format" ;;
    upgrade) echo "--binary" ;;
    open) echo "--mode --create --excl --trunc --perm" ;;
    exec) echo "--get --take --open --bind --wait" ;;
    esac
}

# Options that take no value (every other one does).
_fdbrokerctl_switches=" --json --help --version --replace --create --excl --trunc "

# Entry names, one a line: the first column of `list`'s table, past its header
# (names hold no blanks). Errors are dropped; --timeout keeps a wedged broker
# from hanging the shell.
_fdbrokerctl_names() { # $1: the fdbrokerctl binary, $2: --socket's value or ""
    "$1" ${2:+--socket "$2"} --timeout 2 list 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_fdbrokerctl() {
    local cur prev words cword split
    _init_completion -s -n : || return

    # The command, --socket's value and the positional arguments so far, skipping
    # option values.
    local i w command="" socket="" npos=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        case $w in
        --)
            if [[ $command == exec ]]; then
                _command_offset $((i + 1))
                return
            fi
            ;;
        --socket=*) socket=${w#--socket=} ;;
        --socket) socket=${words[i + 1]-} i=$((i + 1)) ;;
        --*=*) ;;
        --*) [[ $_fdbrokerctl_switches == *" $w "* ]] || i=$((i + 1)) ;;
        *)
            if [[ -z $command ]]; then
                command=$w
            else
                npos=$((npos + 1))
            fi
            ;;
        esac
    done

    case $prev in
    --socket | --file | --binary | --open)
        _filedir
        return
        ;;
    --format)
        COMPREPLY=($(compgen -W "text json prometheus" -- "$cur"))
        return
        ;;
    --mode)
        if [[ $command == open ]]; then
            COMPREPLY=($(compgen -W "r w rw a" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "r w rw" -- "$cur"))
        fi
        return
        ;;
    --listen | --bind)
        local schemes="tcp:// tcp6:// udp:// udp6://"
        [[ $prev == --listen ]] && schemes+=" unix:/ unix:@"
        COMPREPLY=($(compgen -W "$schemes" -- "$cur"))
        __ltrim_colon_completions "$cur"
        compopt -o nospace
        return
        ;;
    --get | --take)
        COMPREPLY=($(compgen -W "$(_fdbrokerctl_names "${words[0]}" "$socket")" -- "$cur"))
        __ltrim_colon_completions "$cur"
        return
        ;;
    --timeout | --limit | --wait | --fd | --meta | --ttl | --expect-generation | --perm)
        return # a number or JSON: nothing to offer
        ;;
    esac
    $split && return

    if [[ $cur == -* ]]; then
        local opts
        opts=$(_fdbrokerctl_options)
        [[ -n $command ]] && opts+=" $(_fdbrokerctl_options "$command")"
        [[ $command == exec ]] && opts+=" --"
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi

    if [[ -z $command ]]; then
        COMPREPLY=($(compgen -W "$_fdbrokerctl_commands" -- "$cur"))
        return
    fi
    ((npos == 0)) || return
    case $command in
    get | take | put | delete | list)
        COMPREPLY=($(compgen -W "$(_fdbrokerctl_names "${words[0]}" "$socket")" -- "$cur"))
        __ltrim_colon_completions "$cur"
        ;;
    open) _filedir ;;
    esac
} && complete -F _fdbrokerctl fdbrokerctl
