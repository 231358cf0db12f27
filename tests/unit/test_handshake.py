"""The Hello handshake as messages: what passes, and that no replayed, reflected or
swapped transcript does."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.core.handshake import (
    CALLEE_CONTEXT,
    CHALLENGE_BYTES,
    TLS_CALLEE_CONTEXT,
    Challenges,
    HandshakeError,
    callee_message,
    same_endpoint,
    sign_caller,
    verify_callee,
    verify_caller,
)
from peer.core.identity import Identity

ALICE = Identity.from_seed(b"\x01" * 32, "Alice")  # the caller
BOB = Identity.from_seed(b"\x02" * 32, "Bob")  # the callee
MALLORY = Identity.from_seed(b"\x03" * 32, "Mallory")
ADDRESS = "127.0.0.1:5001"


@dataclass(frozen=True)
class Transcript:
    """Everything one handshake puts on the wire."""

    caller_id: bytes
    caller_challenge: bytes
    address: str
    callee_id: bytes
    callee_challenge: bytes
    callee_proof: bytes
    caller_proof: bytes


def honest(caller: Identity = ALICE, callee: Identity = BOB, address: str = ADDRESS,
           challenges: Challenges | None = None, caller_challenge: bytes | None = None
           ) -> Transcript:
    table = challenges if challenges is not None else Challenges()
    na = caller_challenge if caller_challenge is not None else bytes(range(32))
    nb, callee_proof = table.issue(callee, caller.node_id, na, address, now=0.0)
    caller_proof = sign_caller(caller, na, callee.node_id, nb, address)
    return Transcript(caller.node_id, na, address, callee.node_id, nb, callee_proof,
                      caller_proof)


def callee_accepted(t: Transcript) -> bool:
    """The caller's check of a HelloReply, as ``Mesh.probe`` runs it."""
    try:
        verify_callee(t.caller_challenge, t.caller_id, t.address, t.callee_id,
                      t.callee_challenge, t.callee_proof)
    except HandshakeError:
        return False
    return True


def test_an_honest_handshake_passes_both_ways() -> None:
    table = Challenges()
    t = honest(challenges=table)
    assert callee_accepted(t)
    pending = table.take(t.callee_challenge, now=1.0)
    verify_caller(pending, BOB.node_id, ALICE.node_id, t.caller_proof)


def test_a_challenge_answers_one_prove_only() -> None:
    table = Challenges()
    t = honest(challenges=table)
    verify_caller(table.take(t.callee_challenge, now=1.0), BOB.node_id, ALICE.node_id,
                  t.caller_proof)
    with pytest.raises(HandshakeError, match="unknown, used or expired"):
        table.take(t.callee_challenge, now=1.0)  # the same Prove replayed


def test_challenges_expire_and_are_bounded() -> None:
    table = Challenges(limit=3, ttl=10.0)
    old = honest(challenges=table)
    with pytest.raises(HandshakeError):
        table.take(old.callee_challenge, now=10.5)
    issued = [honest(challenges=table).callee_challenge for _ in range(5)]
    assert len(table) == 3
    with pytest.raises(HandshakeError):
        table.take(issued[0], now=1.0)  # the oldest were dropped
    table.take(issued[-1], now=1.0)


def test_prove_must_come_from_the_node_that_said_hello() -> None:
    table = Challenges()
    t = honest(challenges=table)
    # Mallory answers the challenge Bob issued to Alice, with her own key.
    forged = sign_caller(MALLORY, t.caller_challenge, BOB.node_id, t.callee_challenge, ADDRESS)
    pending = table.take(t.callee_challenge, now=1.0)
    with pytest.raises(HandshakeError, match="another node"):
        verify_caller(pending, BOB.node_id, MALLORY.node_id, forged)
    with pytest.raises(HandshakeError, match="signature"):
        verify_caller(pending, BOB.node_id, ALICE.node_id, forged)


def test_a_relayed_proof_names_the_wrong_address() -> None:
    # Mallory (listed in Grape at 10.0.0.9:7000) relays Alice's Hello to Bob. Bob
    # signs only the address he was reached at, so his proof names his address,
    # and Alice, who dialed Mallory's, refuses it.
    relayed = honest(address="127.0.0.1:5001")
    assert not callee_accepted(replace(relayed, address="10.0.0.9:7000"))


def test_reflection_a_callers_proof_is_no_callee_proof() -> None:
    t = honest()
    assert not callee_accepted(replace(t, callee_proof=t.caller_proof))
    # And Alice, asked as a callee, signs a message no caller proof ever equals.
    as_callee = callee_message(t.caller_challenge, ALICE.node_id, BOB.node_id,
                               t.callee_challenge, ADDRESS)
    assert ALICE.sign(as_callee) != t.caller_proof


def test_malformed_fields_are_refused_not_raised_as_other_errors() -> None:
    t = honest()
    for bad in (replace(t, caller_challenge=b"short"), replace(t, callee_id=b""),
                replace(t, address=""), replace(t, address="x" * 400),
                replace(t, callee_proof=b""), replace(t, callee_proof=b"\x00" * 64)):
        assert not callee_accepted(bad)
    with pytest.raises(HandshakeError):
        Challenges().issue(BOB, ALICE.node_id, b"\x00" * (CHALLENGE_BYTES - 1), ADDRESS, 0.0)


# ---------------------------------------------------------------- transcripts, mutated

OTHER_SESSION = honest(caller_challenge=b"\x07" * 32)
FIELDS = [f.name for f in fields(Transcript)]


def _values_for(name: str) -> st.SearchStrategy[object]:
    if name == "address":
        return st.sampled_from(["127.0.0.1:5002", "127.0.0.2:5001", "[::1]:5001",
                                ADDRESS + " "])
    own = honest()
    pool = [getattr(own, other) for other in FIELDS if other != "address"]
    pool += [getattr(OTHER_SESSION, other) for other in FIELDS if other != "address"]
    pool += [MALLORY.node_id]
    return st.one_of(st.sampled_from(pool), st.binary(min_size=0, max_size=80))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Transcript, Transcript]:
    original = honest()
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    changes = {name: draw(_values_for(name)) for name in names}
    return original, replace(original, **changes)


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_a_caller_accepts_no_transcript_but_the_one_it_started(
        pair: tuple[Transcript, Transcript]) -> None:
    """Replayed (another session's) challenges and proofs, swapped ids and nonces,
    reflected proofs, other addresses, random bytes: all refused."""
    original, changed = pair
    relevant = [n for n in FIELDS if n != "caller_proof"]
    same = all(getattr(original, n) == getattr(changed, n) for n in relevant)
    assert callee_accepted(changed) == same


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_callee_accepts_no_prove_but_the_answer_to_its_challenge(data: st.DataObject) -> None:
    """Prove messages built from this session's, another session's and random values,
    each field possibly swapped with another: only a real answer passes, once."""
    table = Challenges()
    t = honest(challenges=table)  # Bob issued exactly one challenge, to Alice
    other = honest(challenges=table, caller_challenge=b"\x09" * 32)  # and one more
    pool = [getattr(session, n) for session in (t, other) for n in FIELDS if n != "address"]
    pool += [MALLORY.node_id]
    sent = {}
    for name in ("caller_id", "callee_challenge", "caller_proof"):
        keep = data.draw(st.booleans(), label=f"keep {name}")
        sent[name] = getattr(t, name) if keep else data.draw(
            st.one_of(st.sampled_from(pool), st.binary(max_size=80)), label=name)
    try:
        pending = table.take(sent["callee_challenge"], now=1.0)
        verify_caller(pending, BOB.node_id, sent["caller_id"], sent["caller_proof"])
        accepted = True
    except HandshakeError:
        accepted = False
    # The other session's own complete answer is a real answer too (to its challenge).
    assert accepted == any(all(sent[n] == getattr(session, n) for n in sent)
                           for session in (t, other))


# ---------------------------------------------------------------- the TLS certificate binding

CERT_A = bytes(range(32))  # sha256 of the real callee's certificate
BINDINGS = st.one_of(st.just(b""), st.just(CERT_A), st.binary(min_size=32, max_size=32))


@settings(max_examples=200, deadline=None)
@given(signed=BINDINGS, seen=BINDINGS)
def test_a_proof_passes_only_over_the_certificate_the_caller_saw(signed: bytes,
                                                                 seen: bytes) -> None:
    """The callee signs the hash of the certificate it served (or none, plain); the
    caller checks against the one its connection was shown. A man in the middle's
    certificate, a plain proof taken for a TLS one or the reverse: all refused."""
    table = Challenges()
    na = bytes(range(32, 64))
    nb, proof = table.issue(BOB, ALICE.node_id, na, ADDRESS, now=0.0, binding=signed)
    try:
        verify_callee(na, ALICE.node_id, ADDRESS, BOB.node_id, nb, proof, seen)
        accepted = True
    except HandshakeError:
        accepted = False
    assert accepted == (signed == seen)
    # The caller's answer is checked against what the callee served, the same way.
    pending = table.take(nb, now=1.0)
    answer = sign_caller(ALICE, na, BOB.node_id, nb, ADDRESS, seen)
    try:
        verify_caller(pending, BOB.node_id, ALICE.node_id, answer)
        answered = True
    except HandshakeError:
        answered = False
    assert answered == (signed == seen)


def test_bound_and_plain_transcripts_never_share_bytes() -> None:
    # Under their own context strings: a TLS transcript is never a plain one with a
    # longer address, nor the other way round.
    plain = callee_message(b"\x01" * 32, ALICE.node_id, BOB.node_id, b"\x02" * 32, ADDRESS)
    bound = callee_message(b"\x01" * 32, ALICE.node_id, BOB.node_id, b"\x02" * 32, ADDRESS,
                           CERT_A)
    assert plain[:len(CALLEE_CONTEXT)] == CALLEE_CONTEXT
    assert bound[:len(TLS_CALLEE_CONTEXT)] == TLS_CALLEE_CONTEXT
    assert not bound.startswith(CALLEE_CONTEXT) and not plain.startswith(TLS_CALLEE_CONTEXT)
    with pytest.raises(HandshakeError):
        callee_message(b"\x01" * 32, ALICE.node_id, BOB.node_id, b"\x02" * 32, ADDRESS,
                       b"\x00" * 31)


# ---------------------------------------------------------------- the callee's address check

@pytest.mark.parametrize(("address", "local", "same"), [
    ("127.0.0.1:5001", ("127.0.0.1", 5001), True),
    ("127.0.0.1:5001", ("127.0.0.1", 5002), False),
    ("127.0.0.1:5001", ("10.0.0.1", 5001), False),
    ("127.0.0.1:5001", ("::ffff:127.0.0.1", 5001, 0, 0), True),
    ("[::1]:5001", ("::1", 5001, 0, 0), True),
    ("localhost:5001", ("127.0.0.1", 5001), False),  # names are not addresses
    ("127.0.0.1", ("127.0.0.1", 5001), False),
    ("127.0.0.1:x", ("127.0.0.1", 5001), False),
    ("127.0.0.1:5001", None, False),
])
def test_same_endpoint(address: str, local: object, same: bool) -> None:
    assert same_endpoint(address, local) is same
