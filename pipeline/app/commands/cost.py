"""``clickstream-etl cost``: the modeled monthly AWS cost at N events/s, itemized, for each mode.

The model is :mod:`pipeline.app.cost` over ``config/prices.toml``; ``--measure`` refreshes its
measured inputs (:mod:`pipeline.app.cost_measure`).  Exit code 2 for bad arguments or a prices
file that lacks what the model needs.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.app.arguments import config_argument, non_negative_float, positive_int
from pipeline.app.cli import EXIT_OK
from pipeline.errors import InputError

DESCRIPTION = """\
Model the monthly AWS cost of the pipeline at N events/s (a month's average), in dollars per month and per
million events, itemized as fixed costs (Kinesis shards or on-demand stream hours, KMS keys, alarms, custom
metrics, schedules, the SQS poller) and per-event costs (Lambda requests and GB-s from the stages' measured CPU
per event, Kinesis PUT payload units, Firehose GB, S3 requests and storage, DynamoDB request units and storage,
CloudWatch Logs), for the streaming and the direct mode, beside the published figures of the AWS clickstream
solution and Snowplow's quickstart, and the dashboard's own table (issue 16: the hourly rollup every stack
runs, and the hosted site behind CloudFront when the template's Dashboard is enabled). List prices
(us-east-1), measurements and assumptions are in config/prices.toml; --prices overlays another file on it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "--events-per-second", type=non_negative_float, metavar="N", help="average event rate over the month"
    )
    parser.add_argument("--mode", choices=("streaming", "direct"), help="one deployment mode (default: both)")
    parser.add_argument(
        "--stream-capacity",
        choices=("provisioned", "on-demand"),
        default="provisioned",
        help="the streams' capacity mode in streaming mode (default: provisioned)",
    )
    parser.add_argument("--redshift", action="store_true", help="include the Redshift path (Firehose, the loader)")
    parser.add_argument("--prices", metavar="FILE", help="a TOML overlay on config/prices.toml")
    parser.add_argument("--json", action="store_true", help="print the estimates as JSON")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="measure the stages' CPU per event on this machine and print the [measured] table for prices.toml",
    )
    parser.add_argument(
        "--lines", type=positive_int, default=20000, help="log lines --measure generates (default: 20000)"
    )
    config_argument(parser)


def run(args: argparse.Namespace) -> int:
    from pipeline.app.cost import (
        Mode,
        StreamSettings,
        dashboard_estimate,
        estimate,
        load_cost_inputs,
        peer_figures,
        render_dashboard,
        render_estimate,
        render_peers,
        without_dedupe,
    )
    from pipeline.config import load_config

    if args.measure:
        from pipeline.app.cost_measure import measure

        print(measure(args.lines).to_toml(), end="")
        return EXIT_OK
    if args.events_per_second is None:
        raise InputError("give --events-per-second N (or --measure)")
    inputs = load_cost_inputs(args.prices)
    config = load_config(args.config).stream
    stream = StreamSettings(
        config.record_target_bytes, config.cross_batch_dedupe, config.dedupe_window_days, config.dedupe_concurrency
    )
    modes: list[Mode] = [args.mode] if args.mode else ["streaming", "direct"]
    estimates = [
        estimate(
            mode,
            args.events_per_second,
            inputs,
            stream=stream,
            stream_capacity=args.stream_capacity,
            redshift=args.redshift,
        )
        for mode in modes
    ]
    alternatives = [without_dedupe(inputs, e, stream) if e.dedupe else None for e in estimates]
    # The rollup and the site do not depend on the mode: one table for the month's events.
    dashboard = dashboard_estimate(estimates[0].events_per_month, inputs)
    if args.json:
        document = {
            "as_of": inputs.prices.as_of,
            "region": inputs.prices.region,
            "sources": inputs.prices.sources(),
            "estimates": [
                {**e.to_json(), "without_dedupe_usd": round(a.total, 2) if a else None}
                for e, a in zip(estimates, alternatives, strict=True)
            ],
            "dashboard": dashboard.to_json(),
            "peers": [vars(peer) for peer in peer_figures(inputs)],
        }
        print(json.dumps(document, indent=1))
        return EXIT_OK
    out = sys.stdout
    for e, alternative in zip(estimates, alternatives, strict=True):
        out.write("\n".join(render_estimate(e, inputs, alternative=alternative)) + "\n\n")
    if len(estimates) == 2:
        streaming, direct = estimates
        out.write(
            f"at {args.events_per_second:g} events/s: streaming ${streaming.total:,.2f} a month "
            f"(${streaming.per_million():.3f} per million events), direct ${direct.total:,.2f} "
            f"(${direct.per_million():.3f} per million)\n"
        )
    out.write("\n" + "\n".join(render_dashboard(dashboard)) + "\n\n")
    out.write("\n".join(render_peers(inputs)) + "\n")
    return EXIT_OK
