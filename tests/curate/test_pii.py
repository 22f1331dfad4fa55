import random

import pytest
from corpus import CONTROL_TEXTS, control_records, pii_records

from ciyuan.curate.pipeline import run_steps
from ciyuan.curate.steps import make_step
from ciyuan.curate.steps.pii import PLACEHOLDERS, cn_id_valid, luhn_valid, redact


def test_every_planted_pii_instance_is_redacted_and_counted():
    rng = random.Random(3)
    planted = pii_records(rng, per_type=25)
    records = [{"id": str(i), "text": t, "meta": {}} for i, (t, _) in enumerate(planted)]
    step = make_step("pii")
    out = run_steps(records, [step])
    expected_total: dict[str, int] = {}
    for rec, (_, values) in zip(out, planted, strict=True):
        for kind, vals in values.items():
            for v in vals:
                assert v not in rec["text"], (kind, v, rec["text"])
            assert rec["meta"]["curation"]["pii"][kind] == len(vals), (kind, rec["text"])
            assert PLACEHOLDERS[kind] in rec["text"]
            expected_total[kind] = expected_total.get(kind, 0) + len(vals)
        assert rec["meta"]["curation"]["changed_by"] == ["pii"]
    assert dict(step.stats.counters) == expected_total
    assert step.stats.changed == len(records)


def test_pii_free_control_set_is_unchanged():
    records = [{"id": str(i), "text": t, "meta": {}} for i, t in enumerate(control_records())]
    step = make_step("pii")
    out = run_steps(records, [step])
    for rec, original in zip(out, CONTROL_TEXTS, strict=True):
        assert rec["text"] == original
        assert "curation" not in rec["meta"]
    assert step.stats.changed == 0 and not step.stats.counters


@pytest.mark.parametrize(
    "text,kind",
    [
        ("身份证号11010519491231002X。", "cn_id"),
        ("手机13812345678，", "phone"),
        ("call +86 138 1234 5678 now", "phone"),
        ("card 4111-1111-1111-1111.", "bank_card"),
        ("from 10.0.0.1 to", "ipv4"),
        ("addr 2001:db8::1 ok", "ipv6"),
        ("mail a.b+c@example.co.uk.", "email"),
    ],
)
def test_single_detections(text, kind):
    _, counts = redact(text)
    assert counts == {kind: 1}


def test_validators_reject_bad_checksums():
    assert cn_id_valid("11010519491231002X")
    assert not cn_id_valid("110105194912310021")
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    # an ID-shaped number with a wrong check digit and a Luhn-invalid card stay as they are
    assert redact("110105194912310021 and 4111 1111 1111 1112")[1] == {}


def test_reject_over_limit_marks_record():
    step = make_step("pii", {"reject_over": 1})
    out = run_steps([{"id": "a", "text": "x@example.com y@example.com", "meta": {}}], [step])
    assert out[0]["_rejected"]["rule"] == "too_much_pii"
    assert out[0]["text"] == "<EMAIL> <EMAIL>"  # rejected records keep the redacted text


def test_cheap_prechecks_never_hide_a_detector_match():
    """The hints that let most text skip the detectors fire for every validated detector match."""
    from ciyuan.curate.steps.pii import DETECTORS, _candidate_kinds

    rng = random.Random(5)
    texts = [t for t, _ in pii_records(rng, per_type=25)] + list(CONTROL_TEXTS)
    seps = "0123456789 .-()+:@abcdefxX"
    texts += ["".join(rng.choice(seps) for _ in range(rng.randint(5, 40))) for _ in range(3000)]
    hits = 0
    for text in texts:
        kinds = _candidate_kinds(text)
        for kind, pattern, ok in DETECTORS:
            for m in pattern.finditer(text):
                if ok is not None and not ok(m, text):
                    continue
                hits += 1
                assert kind in kinds, (kind, m.group(), text)
    assert hits >= 150
