"""Each code's life after issue: its states and the rules by which events move it (pure).

A code is *issued* (printed, not yet released for sale), *active*, *shipped* to a dealer, *sold*
(sold or decommissioned) or *blocked* (reported counterfeit, stolen, destroyed). Events are GS1
EPCIS 2.0 ObjectEvents and AggregationEvents, named by their CBV business step; the same rules
decide a capture (verifier/events.py) and `audit verify`'s replay of the stored events
(verifier/replay.py), so a table that an event could not have produced is caught.
docs/traceability.md is the user's description of all this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

ISSUED = "issued"
ACTIVE = "active"
SHIPPED = "shipped"
SOLD = "sold"
BLOCKED = "blocked"
STATES = (ISSUED, ACTIVE, SHIPPED, SOLD, BLOCKED)

# How a batch's codes are released for sale: on issue (as before lifecycles existed), as a whole
# batch, case by case (commissioning a case releases what is packed in it), or when shipped.
ACTIVATIONS = ("issue", "batch", "case", "shipment")
UNITS = ("item", "case", "pallet")  # what a batch's labels go on; a case holds items, a pallet cases
_HOLDS = {"case": ("item",), "pallet": ("item", "case")}
BLOCK_REASONS = ("counterfeit", "stolen", "destroyed")
_BLOCKING_DISPOSITIONS = {"destroyed": "destroyed", "stolen": "stolen"}  # CBV dispositions that block

OBJECT = "ObjectEvent"
AGGREGATION = "AggregationEvent"
# The (event type, action, CBV business step) verifier records, and what each does.
COMMISSIONING = "commissioning"
PACKING = "packing"
UNPACKING = "unpacking"
SHIPPING = "shipping"
RECEIVING = "receiving"
RETAIL_SELLING = "retail_selling"
DECOMMISSIONING = "decommissioning"
SUPPORTED = {
    (OBJECT, "ADD", COMMISSIONING): "release the codes for sale",
    (OBJECT, "OBSERVE", SHIPPING): "ship to a dealer",
    (OBJECT, "OBSERVE", RECEIVING): "received by the dealer",
    (OBJECT, "OBSERVE", RETAIL_SELLING): "sold to a consumer",
    (OBJECT, "DELETE", RETAIL_SELLING): "sold to a consumer",
    (OBJECT, "DELETE", DECOMMISSIONING): "decommissioned (or blocked: disposition destroyed or stolen)",
    (AGGREGATION, "ADD", PACKING): "pack items into a case",
    (AGGREGATION, "DELETE", UNPACKING): "unpack items from a case",
}
# Steps that act on what a case holds when they name the case.
_THROUGH_CASES = (COMMISSIONING, SHIPPING, RECEIVING, RETAIL_SELLING, DECOMMISSIONING)


@dataclass(frozen=True)
class Facts:
    """What an event says, as the events table stores it."""

    type: str
    action: str
    biz_step: str
    event_time: str  # UTC text
    disposition: str | None = None
    parent: int | None = None  # AggregationEvent: the case
    dealer_id: int | None = None  # shipping: the dealer
    region: str | None = None  # shipping: the dealer's sales regions
    reason: str | None = None  # a block's reason

    @property
    def through_cases(self) -> bool:
        return self.biz_step in _THROUGH_CASES

    @property
    def block_reason(self) -> str | None:
        """Why this event blocks the codes it names, or None when it does not block them."""
        if self.biz_step != DECOMMISSIONING:
            return None
        return self.reason or _BLOCKING_DISPOSITIONS.get(self.disposition or "")


class CodeState(NamedTuple):
    """One code's state (a code_states row, or its batch's default when it has none). A named
    tuple: a capture makes one per code it changes, a million for a million items packed."""

    state: str
    parent: int | None = None
    dealer_id: int | None = None
    region: str | None = None
    shipped_at: str | None = None
    received_at: str | None = None
    sold_at: str | None = None
    reason: str | None = None


class Code(NamedTuple):
    """What the rules need to know of a code besides its serial and state: its batch's, so one
    object serves every code of a batch."""

    unit: str  # its batch's unit
    activation: str  # its batch's activation


class Refused(ValueError):
    """An event that cannot apply to a code; `code` is a stable machine reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


UNRELEASED = CodeState(ISSUED)  # every code's state before its first event
RELEASED = CodeState(ACTIVE)


def initial_state(activation: str, batch_activated_at: str | None) -> CodeState:
    """A code's state before any event: active when its batch is released on issue or has been
    released as a whole, else issued."""
    return RELEASED if activation == "issue" or batch_activated_at else UNRELEASED


def effective_state(state: CodeState, activation: str, batch_activated_at: str | None, at: str) -> CodeState:
    """A stored state as it stands at time `at` (UTC text): an issued code of a batch released as a
    whole by then is active (a release changes no code's row, so it costs nothing per code)."""
    if state.state == ISSUED and (activation == "issue" or (batch_activated_at and batch_activated_at <= at)):
        return RELEASED if state is UNRELEASED else state._replace(state=ACTIVE)
    return state


def check_supported(facts: Facts) -> None:
    """Refuse an event type, action and step that verifier does not record."""
    if (facts.type, facts.action, facts.biz_step) not in SUPPORTED:
        raise Refused(
            "unsupported-event",
            f"{facts.type} {facts.action} with bizStep {facts.biz_step!r} is not recorded: verifier records "
            + "; ".join(f"{t} {a} {s}" for t, a, s in SUPPORTED),
        )


def check_packing(parent_serial: int, parent: Code, child_serial: int, child: Code) -> None:
    """Whether `child` may be packed into `parent` (an item into a case, items or cases into a pallet)."""
    if child_serial == parent_serial:
        raise Refused("bad-aggregation", f"code {parent_serial:016d} cannot be packed into itself")
    if child.unit not in _HOLDS.get(parent.unit, ()):
        raise Refused(
            "bad-aggregation",
            f"code {parent_serial:016d} is a label of unit {parent.unit!r}: it cannot hold a {child.unit!r}",
        )


def apply(serial: int, code: Code, state: CodeState, facts: Facts, *, named_parent: bool = False) -> CodeState:
    """The code's state after the event; Refused when the event cannot apply to it.
    `named_parent`: the code is the event's parent (a case being packed or unpacked), which the
    event does not change."""
    step = facts.biz_step
    if named_parent:
        return state
    if state.state == BLOCKED and facts.block_reason is None:
        raise Refused("blocked", f"code {serial:016d} is blocked ({state.reason}): no event moves it on")
    if step == COMMISSIONING:
        if state.state == SOLD:
            raise Refused("already-sold", f"code {serial:016d} was sold on {state.sold_at}")
        return state._replace(state=ACTIVE) if state.state == ISSUED else state
    if step == PACKING:
        if state.state == SOLD:
            raise Refused("already-sold", f"code {serial:016d} was sold on {state.sold_at}")
        if state.parent is not None and state.parent != facts.parent:
            raise Refused("already-packed", f"code {serial:016d} is packed in case {state.parent:016d}")
        return CodeState(state[0], facts.parent, *state[2:])  # the hot path: a million items packed
    if step == UNPACKING:
        if state.parent != facts.parent:
            raise Refused("not-in-case", f"code {serial:016d} is not packed in case {facts.parent:016d}")
        return state._replace(parent=None)
    if step == SHIPPING:
        _check_for_sale(serial, state, allow_issued=code.activation == "shipment")
        return state._replace(
            state=SHIPPED,
            dealer_id=facts.dealer_id,
            region=facts.region,
            shipped_at=facts.event_time,
            received_at=None,
        )
    if step == RECEIVING:
        if state.state != SHIPPED:
            raise Refused("not-shipped", f"code {serial:016d} was not shipped (it is {state.state})")
        return state._replace(received_at=facts.event_time)
    if step in (RETAIL_SELLING, DECOMMISSIONING):
        reason = facts.block_reason
        if reason is not None:
            if state.state == BLOCKED:
                return state  # blocked already: the first reason stands
            return state._replace(state=BLOCKED, reason=reason)
        _check_for_sale(serial, state, allow_issued=False)
        return state._replace(state=SOLD, sold_at=facts.event_time)
    raise Refused("unsupported-event", f"bizStep {step!r} is not recorded")


def _check_for_sale(serial: int, state: CodeState, allow_issued: bool) -> None:
    if state.state == SOLD:
        raise Refused("already-sold", f"code {serial:016d} was sold on {state.sold_at}")
    if state.state == ISSUED and not allow_issued:
        raise Refused("not-released", f"code {serial:016d} is not released for sale yet (activate it first)")
