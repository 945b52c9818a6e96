"""The roof: what composes the stages into commands.

The CLI (:mod:`pipeline.app.cli`, one subcommand table, one exit-code map), the file core
shared by the backfill and its workers (:mod:`pipeline.app.process`), the local backfill
(:mod:`pipeline.app.backfill`), the subcommands (:mod:`pipeline.app.commands`) and the local
runtime that drives the Lambda handlers on emulated AWS (:mod:`pipeline.app.local`).  This is
the only package under ``pipeline/`` that imports ``extract``, ``transform`` or ``load``.
"""
