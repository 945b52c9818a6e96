"""The processing ledger (DynamoDB, conditional writes only).

One item per S3 object version (bucket, key, ETag) records whether it is in progress,
complete or failed, who holds it (a lease that expires), the next line to read and the
counts so far.  Duplicate notifications of a complete object are no-ops; an invocation
near its timeout checkpoints its line and releases the lease so that a fresh invocation
resumes exactly there.  A second kind of item records the Parquet sink's batch attempts and
their claims on stream-2 chunks and events, provisional until the attempt commits (the
protocol is in :mod:`load.sink`), so every event is written to one object only.  A third keeps
where the Extract reconciler's listing of a bucket stopped, so its next run goes on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pipeline.aws.errors import aws_exceptions, classify, error_code
from pipeline.errors import TerminalError, TransientError

Status = Literal["IN_PROGRESS", "COMPLETE", "FAILED"]

TTL_ATTRIBUTE: Final = "expires_at"
"""The attribute the table's time to live reads (epoch seconds)."""


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


def chunk_claim_id(chunk_id: str) -> str:
    """The ledger item claiming a stream-2 chunk (its partition key) for the Parquet sink."""
    return _chunk_pk(chunk_id)


def event_claim_id(event_id: str, fingerprint: str) -> str:
    """The ledger item claiming a natural event for the Parquet sink (the cross-batch manifest)."""
    return _event_pk(event_id, fingerprint)


def _sink_batch_pk(key: str) -> str:
    return f"sink#{key}"


SinkBatchStatus = Literal["PENDING", "COMMITTED", "ABORTED"]


@dataclass(frozen=True, slots=True)
class ClaimHolder:
    """Who holds a Parquet-sink claim: a batch key and the attempt that claimed it.

    ``attempt`` is "" for a claim written before attempts were recorded; it counts as final.
    """

    batch: str
    attempt: str


@dataclass(frozen=True, slots=True)
class SinkBatch:
    """The ledger's record of a sink batch: its latest attempt and how far that got (see :mod:`load.sink`)."""

    key: str
    attempt: str
    status: SinkBatchStatus
    lease_until_ms: int
    """Until when the attempt may still be running (past it, Lambda has stopped it)."""
    outputs: tuple[str, ...] | None
    """The S3 keys the attempt writes, recorded before the first of them is put; None until planned."""
    rows_written: int


def _sink_batch(key: str, item: Mapping[str, Any]) -> SinkBatch:
    outputs = item.get("outputs")
    return SinkBatch(
        key,
        item["attempt"]["S"],
        item["status"]["S"],
        int(item["lease_until"]["N"]),
        tuple(value["S"] for value in outputs["L"]) if outputs is not None else None,
        int(item.get("rows_written", {}).get("N", "0")),
    )


def _claim_item(claim_id: str, holder: ClaimHolder, expires_at_s: int) -> dict[str, Any]:
    return {
        "pk": {"S": claim_id},
        "owner": {"S": holder.batch},
        "attempt": {"S": holder.attempt},
        TTL_ATTRIBUTE: {"N": str(expires_at_s)},
    }


def _claim_holder(item: Mapping[str, Any]) -> ClaimHolder:
    # Chunk claims of earlier versions named their batch in ``object_key`` and had no attempt.
    batch = item.get("owner", item.get("object_key", {})).get("S", "")
    return ClaimHolder(batch, item.get("attempt", {}).get("S", ""))


def _each(call: Callable[[str], Any], claim_ids: Sequence[str], concurrency: int) -> list[Any]:
    """``call`` on each id, in order; on a thread pool of ``concurrency`` when that is > 1."""
    if concurrency <= 1 or len(claim_ids) < 2:
        return [call(claim_id) for claim_id in claim_ids]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(call, claim_ids))


def _cursor_pk(scope: str) -> str:
    return f"reconcile#{scope}"


# BatchGetItem reads at most 100 keys a call; keys it leaves unprocessed (throttling) are asked
# again a few times, then read one by one (GetItem, retried by botocore).
_BATCH_GET_KEYS: Final = 100
_BATCH_GET_ROUNDS: Final = 3


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
        return self._request(method, TableName=self._table, **kwargs)

    def _request(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(**kwargs)
        except aws_exceptions() as exc:
            if _is_conditional_failure(exc):
                raise
            failure = classify(exc)
            error = LedgerError if failure.retryable else LedgerAccessError
            raise error(f"ledger {method} on {self._table} failed: {failure.code}") from exc

    # ----------------------------------------------------------------- objects
    def get(self, obj: ObjectId) -> LedgerEntry | None:
        item = self._call("get_item", Key={"pk": {"S": obj.pk}}, ConsistentRead=True).get("Item")
        return _entry(obj, item) if item else None

    def get_many(self, objects: Sequence[ObjectId]) -> dict[ObjectId, LedgerEntry]:
        """The entries of ``objects`` that exist (strongly consistent reads, 100 keys per call).

        An object missing from the answer has no entry.  Raises LedgerError (retry) or
        LedgerAccessError like :meth:`get`.
        """
        by_pk = {obj.pk: obj for obj in objects}
        found: dict[ObjectId, LedgerEntry] = {}
        pks = list(by_pk)
        for start in range(0, len(pks), _BATCH_GET_KEYS):
            keys: list[dict[str, Any]] = [{"pk": {"S": pk}} for pk in pks[start : start + _BATCH_GET_KEYS]]
            for _ in range(_BATCH_GET_ROUNDS):
                response = self._request(
                    "batch_get_item", RequestItems={self._table: {"Keys": keys, "ConsistentRead": True}}
                )
                for item in response.get("Responses", {}).get(self._table, []):
                    obj = by_pk[item["pk"]["S"]]
                    found[obj] = _entry(obj, item)
                keys = list(response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", []))
                if not keys:
                    break
            for key in keys:
                obj = by_pk[key["pk"]["S"]]
                entry = self.get(obj)
                if entry is not None:
                    found[obj] = entry
        return found

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

    # ------------------------------------------------------------------ reconciliation
    def reconcile_cursor(self, scope: str) -> str:
        """The key after which the reconciler's next listing of ``scope`` starts ("" from the start)."""
        item = self._call("get_item", Key={"pk": {"S": _cursor_pk(scope)}}, ConsistentRead=True).get("Item")
        return str(item["start_after"]["S"]) if item else ""

    def save_reconcile_cursor(self, scope: str, start_after: str) -> None:
        """Remember where the listing of ``scope`` stopped ("" once it reached the end)."""
        self._call(
            "put_item",
            Item={
                "pk": {"S": _cursor_pk(scope)},
                "start_after": {"S": start_after},
                "updated_ms": {"N": str(self.now_ms())},
            },
        )

    # ------------------------------------------------------------- sink claims
    # The Parquet sink's items (the protocol is in load.sink): one record per sink batch
    # ("sink#<batch key>": its latest attempt, PENDING -> COMMITTED or ABORTED), and one claim
    # per stream-2 chunk ("chunk#<id>") or natural event ("event#<id>#<fingerprint>") naming the
    # batch and attempt that holds it.  Every item carries ``expires_at`` (epoch seconds) for the
    # table's TTL; TTL deletes lazily (within days), so a claim past ``expires_at`` counts as free.
    def sink_batch(self, key: str) -> SinkBatch | None:
        """The record of sink batch ``key`` (a strongly consistent read), None when there is none."""
        item = self._call("get_item", Key={"pk": {"S": _sink_batch_pk(key)}}, ConsistentRead=True).get("Item")
        return _sink_batch(key, item) if item else None

    def open_sink_batch(
        self, key: str, attempt: str, *, lease_until_ms: int, expires_at_s: int, replacing: str | None
    ) -> bool:
        """Record ``attempt`` as the live (PENDING) attempt of batch ``key`` until ``lease_until_ms``.

        ``replacing`` is the attempt of the record read before, which must be ABORTED by now
        (None: there was no record).  False when the record is not as read (retry the read).
        """
        condition = "attribute_not_exists(pk)" if replacing is None else "#a = :previous AND #s = :aborted"
        values = {":previous": {"S": replacing}, ":aborted": {"S": "ABORTED"}} if replacing is not None else None
        item = {
            "pk": {"S": _sink_batch_pk(key)},
            "status": {"S": "PENDING"},
            "attempt": {"S": attempt},
            "lease_until": {"N": str(lease_until_ms)},
            TTL_ATTRIBUTE: {"N": str(expires_at_s)},
        }
        names = {"#a": "attempt", "#s": "status"} if replacing is not None else None
        return self._conditional("put_item", Item=item, ConditionExpression=condition, names=names, values=values)

    def record_sink_outputs(self, key: str, attempt: str, outputs: Sequence[str], rows_written: int) -> bool:
        """List the S3 keys ``attempt`` is about to write; False when it is no longer the live attempt."""
        return self._conditional(
            "update_item",
            Key={"pk": {"S": _sink_batch_pk(key)}},
            UpdateExpression="SET outputs = :outputs, rows_written = :rows",
            ConditionExpression="#a = :attempt AND #s = :pending",
            names={"#a": "attempt", "#s": "status"},
            values={
                ":outputs": {"L": [{"S": output} for output in outputs]},
                ":rows": {"N": str(rows_written)},
                ":attempt": {"S": attempt},
                ":pending": {"S": "PENDING"},
            },
        )

    def settle_sink_batch(self, key: str, attempt: str, status: Literal["COMMITTED", "ABORTED"]) -> bool:
        """Turn ``attempt`` of batch ``key`` from PENDING to ``status``; False when it is not PENDING (any more)."""
        return self._conditional(
            "update_item",
            Key={"pk": {"S": _sink_batch_pk(key)}},
            UpdateExpression="SET #s = :status",
            ConditionExpression="#a = :attempt AND #s = :pending",
            names={"#a": "attempt", "#s": "status"},
            values={":status": {"S": status}, ":attempt": {"S": attempt}, ":pending": {"S": "PENDING"}},
        )

    def claim_for_sink(
        self, claim_ids: Sequence[str], holder: ClaimHolder, *, expires_at_s: int, concurrency: int = 1
    ) -> list[ClaimHolder | None]:
        """Claim each of ``claim_ids`` (:func:`chunk_claim_id`, :func:`event_claim_id`) for ``holder``.

        None where the claim is ``holder``'s now: it was free, expired, or already its batch's
        (any attempt: a retry with the same boundaries); else who holds it.  One conditional put
        per claim (TransactWriteItems would refuse a whole group for one held claim);
        ``concurrency`` > 1 runs them on a thread pool (boto3 clients are thread-safe).
        """

        def claim(claim_id: str) -> ClaimHolder | None:
            for _ in range(2):  # a claim given back between our put and our read is tried once more
                try:
                    self._call(
                        "put_item",
                        Item=_claim_item(claim_id, holder, expires_at_s),
                        ConditionExpression=(
                            "attribute_not_exists(pk) OR expires_at < :now OR #o = :batch OR object_key = :batch"
                        ),
                        ExpressionAttributeNames={"#o": "owner"},
                        ExpressionAttributeValues={
                            ":batch": {"S": holder.batch},
                            ":now": {"N": str(self.now_ms() // 1000)},
                        },
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                except Exception as exc:
                    if not _is_conditional_failure(exc):
                        raise
                    item = getattr(exc, "response", {}).get("Item") or self._call(
                        "get_item", Key={"pk": {"S": claim_id}}, ConsistentRead=True
                    ).get("Item")
                    if item:
                        return _claim_holder(item)
                    continue
                return None
            raise LedgerError(f"claim {claim_id} keeps changing hands; retry")

        return _each(claim, claim_ids, concurrency)

    def take_over_claims(
        self,
        claim_ids: Sequence[str],
        previous: ClaimHolder,
        holder: ClaimHolder,
        *,
        expires_at_s: int,
        concurrency: int = 1,
    ) -> list[bool]:
        """Move each claim from ``previous`` (an attempt that is over) to ``holder``; False where
        ``previous`` no longer holds it."""

        def take(claim_id: str) -> bool:
            return self._conditional(
                "put_item",
                Item=_claim_item(claim_id, holder, expires_at_s),
                ConditionExpression="#o = :batch AND #a = :attempt",
                names={"#o": "owner", "#a": "attempt"},
                values={":batch": {"S": previous.batch}, ":attempt": {"S": previous.attempt}},
            )

        return _each(take, claim_ids, concurrency)

    def release_claims(self, claim_ids: Sequence[str], holder: ClaimHolder) -> None:
        """Give back the claims ``holder`` holds among ``claim_ids`` (its batch failed and was aborted).

        A claim another attempt took over meanwhile stays as it is; any other failure raises
        (:class:`LedgerError`: retry), so the caller knows its claims may still be held.
        """
        for claim_id in claim_ids:
            self._conditional(
                "delete_item",
                Key={"pk": {"S": claim_id}},
                ConditionExpression="#o = :batch AND #a = :attempt",
                names={"#o": "owner", "#a": "attempt"},
                values={":batch": {"S": holder.batch}, ":attempt": {"S": holder.attempt}},
            )

    def _conditional(
        self,
        method: str,
        *,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> bool:
        """A conditional write: False when its condition does not hold, else True (errors raise)."""
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._call(method, **kwargs)
        except Exception as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True


def _entry(obj: ObjectId, item: Mapping[str, Any]) -> LedgerEntry:
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


def create_table(client: Any, table: str) -> None:
    """Create the ledger table (on-demand).  Used by ``run-local`` and tests; SAM in AWS."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # Sink claims and batch records expire (stream.dedupe_window_days); object entries carry
    # no expires_at and stay.  The deployment sets the same TTL attribute.
    client.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
