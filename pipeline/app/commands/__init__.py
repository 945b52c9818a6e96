"""One module per subcommand, each with ``add_arguments(parser)`` and ``run(args) -> exit code``.

The table of subcommands is :data:`pipeline.app.cli.COMMANDS`; a new command is a module
here and one row there.
"""
