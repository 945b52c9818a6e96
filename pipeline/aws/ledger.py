"""The processing ledger (DynamoDB, conditional writes only).

One item per S3 object version (bucket, key, ETag) records whether it is in progress,
complete or failed, who holds it (a lease that expires), the next line to read and the
counts so far.  Duplicate notifications of a complete object are no-ops; an invocation
near its timeout checkpoints its line and releases the lease so that a fresh invocation
resumes exactly there.  A second kind of item claims stream-2 event chunks for the
Parquet sink, so a chunk replayed upstream is written to one object only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.aws.errors import aws_exceptions, classify, error_code
from pipeline.errors import TerminalError, TransientError

Status = Literal["IN_PROGRESS", "COMPLETE", "FAILED"]


class LedgerAccessError(TerminalError):
    """The ledger refused the call for a reason retries will not fix (permissions, missing table)."""


class LedgerError(TransientError):
    """The ledger could not be read or written (throttling, network); retry later."""


@dataclass(frozen=True, slots=True)
class ObjectId:
    bucket: str
    key: str
    etag: str

    @property
    def pk(self) -> str:
        return f"object#{self.bucket}/{self.key}#{self.etag}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to process an object from ``next_line`` on, until ``lease_until``."""

    object: ObjectId
    owner: str
    next_line: int
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClaimRefused:
    """Why an object is not (re)processed now: it is complete, failed, or leased to another."""

    object: ObjectId
    status: Status
    reason: Literal["complete", "failed", "busy"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    object: ObjectId
    status: Status
    next_line: int
    owner: str
    lease_until: int
    counts: Mapping[str, int]
    detail: str


def _chunk_pk(chunk_id: str) -> str:
    return f"chunk#{chunk_id}"


def _event_pk(event_id: str, fingerprint: str) -> str:
    return f"event#{event_id}#{fingerprint}"


def _is_conditional_failure(exc: Exception) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class Ledger:
    """Object and chunk ledger over one DynamoDB table (hash key ``pk``, a string)."""

    def __init__(self, client: Any, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    def now_ms(self) -> int:
        """The ledger's clock (epoch ms), against which leases expire."""
        return int(self._clock() * 1000)

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(TableName=self._table, **kwargs)
        except aws_exceptions() as exc:
            if _is_conditional_failure(exc):
                raise
            failure = classify(exc)
            error = LedgerError if failure.retryable else LedgerAccessError
            raise error(f"ledger {method} on {self._table} failed: {failure.code}") from exc

    # ----------------------------------------------------------------- objects
    def get(self, obj: ObjectId) -> LedgerEntry | None:
        item = self._call("get_item", Key={"pk": {"S": obj.pk}}, ConsistentRead=True).get("Item")
        if not item:
            return None
        counts = {name: int(v["N"]) for name, v in item.get("counts", {}).get("M", {}).items()}
        return LedgerEntry(
            obj,
            item["status"]["S"],
            int(item.get("next_line", {}).get("N", "0")),
            item.get("owner", {}).get("S", ""),
            int(item.get("lease_until", {}).get("N", "0")),
            counts,
            item.get("detail", {}).get("S", ""),
        )

    def claim(self, obj: ObjectId, owner: str, lease_ms: int) -> Claim | ClaimRefused:
        """Take the object for ``lease_ms``: new, or in progress with an expired or released lease."""
        now = self.now_ms()
        try:
            response = self._call(
                "update_item",
                Key={"pk": {"S": obj.pk}},
                UpdateExpression=(
                    "SET #s = :progress, #o = :owner, lease_until = :until, updated_ms = :now, "
                    "next_line = if_not_exists(next_line, :zero), bucket_key = :uri, "
                    "claims = if_not_exists(claims, :zero) + :one"
                ),
                ConditionExpression="attribute_not_exists(pk) OR (#s = :progress AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status", "#o": "owner"},
                ExpressionAttributeValues={
                    ":progress": {"S": "IN_PROGRESS"},
                    ":owner": {"S": owner},
                    ":until": {"N": str(now + max(lease_ms, 0))},
                    ":now": {"N": str(now)},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":uri": {"S": obj.uri},
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise
            entry = self.get(obj)
            if entry is None:  # deleted in between: let the notification be retried
                raise LedgerError(f"ledger entry for {obj.uri} vanished during a claim") from exc
            if entry.status == "COMPLETE":
                return ClaimRefused(obj, entry.status, "complete")
            if entry.status == "FAILED":
                return ClaimRefused(obj, entry.status, "failed")
            return ClaimRefused(obj, entry.status, "busy")
        attrs = response["Attributes"]
        counts = {name: int(v["N"]) for name, v in attrs.get("counts", {}).get("M", {}).items()}
        return Claim(obj, owner, int(attrs["next_line"]["N"]), counts)

    def _owned_update(self, claim: Claim, expression: str, values: dict[str, Any]) -> None:
        try:
            self._call(
                "update_item",
                Key={"pk": {"S": claim.object.pk}},
                UpdateExpression=expression,
                ConditionExpression="#o = :owner AND #s = :progress",
                ExpressionAttributeNames={"#o": "owner", "#s": "status"},
                ExpressionAttributeValues={
                    ":owner": {"S": claim.owner},
                    ":progress": {"S": "IN_PROGRESS"},
                    ":now": {"N": str(self.now_ms())},
                    **values,
                },
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                raise LedgerError(f"lost the lease on {claim.object.uri}; another invocation took it over") from exc
            raise

    @staticmethod
    def _counts_value(counts: Mapping[str, int]) -> dict[str, Any]:
        return {"M": {name: {"N": str(value)} for name, value in sorted(counts.items())}}

    def checkpoint(self, claim: Claim, next_line: int, counts: Mapping[str, int], *, release: bool) -> Claim:
        """Record that every line before ``next_line`` is durable; optionally release the lease."""
        lease = ", lease_until = :zero" if release else ""
        self._owned_update(
            claim,
            f"SET next_line = :line, counts = :counts, updated_ms = :now{lease}",
            {":line": {"N": str(next_line)}, ":counts": self._counts_value(counts), ":zero": {"N": "0"}}
            if release
            else {":line": {"N": str(next_line)}, ":counts": self._counts_value(counts)},
        )
        return Claim(claim.object, claim.owner, next_line, dict(counts))

    def release(self, claim: Claim) -> None:
        """Give the lease up (after an error), so a retry can resume at once."""
        self._owned_update(claim, "SET lease_until = :zero, updated_ms = :now", {":zero": {"N": "0"}})

    def complete(
        self, claim: Claim, counts: Mapping[str, int], *, status: Status = "COMPLETE", detail: str = ""
    ) -> None:
        self._owned_update(
            claim,
            "SET #s = :status, counts = :counts, lease_until = :zero, updated_ms = :now, detail = :detail",
            {
                ":status": {"S": status},
                ":counts": self._counts_value(counts),
                ":zero": {"N": "0"},
                ":detail": {"S": detail},
            },
        )

    # ------------------------------------------------------------------ chunks
    def _claim_item(self, pk: str, owner_field: str, owner: str, extra: dict[str, Any] | None = None) -> bool:
        """Conditional put of a claim: True when ``pk`` is new or already held by ``owner``."""
        try:
            self._call(
                "put_item",
                Item={"pk": {"S": pk}, owner_field: {"S": owner}, **(extra or {})},
                ConditionExpression="attribute_not_exists(pk) OR #f = :owner",
                ExpressionAttributeNames={"#f": owner_field},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def claim_chunk(self, chunk_id: str, object_key: str) -> bool:
        """Assign a stream-2 chunk to the sink object ``object_key``.

        True when the chunk is new or already assigned to the same object (a retried batch);
        False when another object holds it (a replay of the chunk: skip it).
        """
        return self._claim_item(_chunk_pk(chunk_id), "object_key", object_key)

    # ------------------------------------------------------------------ events
    def claim_event(self, event_id: str, fingerprint: str, owner: str, *, expires_at_s: int) -> bool:
        """Grant (event_id, fingerprint) to ``owner``: True when new or already its own.

        The cross-batch event manifest, as Snowplow's: a key another batch holds is a
        natural duplicate (False).  A retried batch (same owner) is granted its keys again.
        The item carries ``expires_at`` for DynamoDB's TTL.
        """
        return self._claim_item(
            _event_pk(event_id, fingerprint), "owner", owner, {"expires_at": {"N": str(expires_at_s)}}
        )

    def claim_events(
        self, keys: Sequence[tuple[str, str]], owner: str, *, expires_at_s: int, concurrency: int = 1
    ) -> set[int]:
        """Indices of the distinct ``keys`` granted to ``owner`` (see :meth:`claim_event`).

        One conditional put per key (TransactWriteItems would refuse a whole group for one
        duplicate); ``concurrency`` > 1 runs them on a thread pool (boto3 clients are thread-safe).
        """

        def claim(index: int) -> bool:
            event_id, fingerprint = keys[index]
            return self.claim_event(event_id, fingerprint, owner, expires_at_s=expires_at_s)

        if concurrency <= 1 or len(keys) < 2:
            return {index for index in range(len(keys)) if claim(index)}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(claim, range(len(keys))))
        return {index for index, ok in enumerate(results) if ok}


    def _release_item(self, prefix: str, owner: str, field: str) -> None:
        """Delete a claim item ``prefix`` held by ``owner`` (its ``field``); best effort by design."""
        try:
            self._call(
                "delete_item",
                Key={"pk": {"S": prefix}},
                ConditionExpression="#f = :owner",
                ExpressionAttributeNames={"#f": field},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except Exception as exc:
            if not _is_conditional_failure(exc):
                raise

    def release_claims(self, chunk_ids: Sequence[str], events: Sequence[tuple[str, str]], owner: str) -> None:
        """Give back the chunk and event claims of ``owner`` (a batch whose write failed).

        A retry, even one whose records Lambda grouped differently, can then claim them again.
        """
        for chunk_id in chunk_ids:
            self._release_item(_chunk_pk(chunk_id), owner, "object_key")
        for event_id, fingerprint in events:
            self._release_item(_event_pk(event_id, fingerprint), owner, "owner")


def create_table(client: Any, table: str) -> None:
    """Create the ledger table (on-demand).  Used by ``run-local`` and tests; SAM in AWS."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
