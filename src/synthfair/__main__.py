"""``python -m synthfair``: the same as the ``synthfair`` command."""

from synthfair.cli.main import main

if __name__ == "__main__":
    main()
