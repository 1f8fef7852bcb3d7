"""User-facing errors: one line, exit status 2, no traceback."""

import functools
import sys


class UserError(Exception):
    """A problem with the user's input (data, config, run directory) that they can fix."""


def exit_on_user_error(main):
    """Wrap a command-line entry point so a UserError prints one line and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return wrapper
