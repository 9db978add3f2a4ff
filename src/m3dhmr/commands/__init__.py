"""Command-line subcommands; each module: ``HELP``, ``add_arguments(parser)``, ``run(args)``.

Command modules import their heavy dependencies inside ``run`` so that building the
parser stays cheap.
"""
