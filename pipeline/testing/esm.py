"""The event source mapping simulator, as public testing API.

Lambda's Kinesis event source mapping is what decides batches, retries, bisection and which
records come back after a partial failure; moto does not emulate it.  The simulator lives with
the local runtime (:mod:`pipeline.app.local.esm`, which documents every rule and modelling
choice); this module is its public name for tests:

* :func:`simulate` -- the ordered records of one shard through a handler, under :class:`EsmSettings`;
  returns an :class:`EsmOutcome` (every :class:`Invocation`, the :class:`DiscardedBatch` es, duplicates);
* :class:`KinesisPoller` -- reads a (moto or real) stream shard by shard and :meth:`~KinesisPoller.drain` s
  new records through :func:`simulate`, returning a :class:`DrainResult`.

::

    outcome = simulate(records, handler, EsmSettings(batch_size=10, bisect_batch_on_function_error=True,
                                                     maximum_retry_attempts=2))
    assert not outcome.discarded
"""

from pipeline.app.local.esm import (
    DiscardedBatch,
    DrainResult,
    EsmConfigError,
    EsmOutcome,
    EsmSettings,
    EsmSimulationError,
    Invocation,
    KinesisPoller,
    simulate,
)

__all__ = [
    "DiscardedBatch",
    "DrainResult",
    "EsmConfigError",
    "EsmOutcome",
    "EsmSettings",
    "EsmSimulationError",
    "Invocation",
    "KinesisPoller",
    "simulate",
]
