"""Verdict rules 2: routine changes a pack itself explains are notes, not findings.

Phoenix builds rebuild their base image too, so every build of a project that uses it
sees its base "changed under the same reference".  When the pack holds the build that
made the new base (an earlier entry whose image ID is the new base's), the change is
traced, not unexplained: a note naming that entry.  Likewise an entry signed by a key
retired since (routine rotation; the key was in force when it signed) is a note, where a
revoked key stays a finding.

``escrow pack verify`` recomputes a pack's verdict by the rules the pack states
(``verdictRules``; packs made before the rules were versioned state none and were judged
by rules 1), so packs already issued still verify as they were made: a pack made by the
escrow before this change is kept in ``tests/pack/data`` and checked here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import Collected, PackRequest, collect
from escrow.pack.evidence import PACK_STATEMENT, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.signing.keys import SigningKey
from tests.conftest import run_cli

from .conftest import PackLedger, pdftotext
from .synth import manifest_variant

OTHER_BASE = "sha256:" + "ab" * 32
BASE_REF = "escrow-example/base:latest"  # the base reference of every synthetic build
RULES_1_PACK = Path(__file__).parent / "data" / "pack-verdict-rules-1.pdf"
RULES_2_PACK = Path(__file__).parent / "data" / "pack-verdict-rules-2.pdf"

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _base_build(n: int) -> dict[str, Any]:
    """Build ``n`` of the base image's own project, ``FROM scratch``."""
    st = manifest_variant(n, project="example-base")
    st["predicate"]["inputs"]["baseImages"] = []
    return st


def _image(st: dict[str, Any]) -> str:
    return str(st["predicate"]["image"]["id"])


def _phoenix_days(pack_ledger: PackLedger, days: int) -> list[int]:
    """``days`` days of phoenix builds: the base rebuilt, then the app built on it."""
    indexes = []
    for day in range(1, days + 1):
        base = _base_build(day)
        pack_ledger.add_statement(base)
        app = pack_ledger.add_statement(manifest_variant(day, base_image_id=_image(base)))
        indexes.append(app.index)
    return indexes


def _pack(cli: Any, out: Path, *args: str) -> dict[str, Any]:
    r = cli(["pack", *args, "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    return dict(r.json())


def _statement(pdf: Path) -> dict[str, Any]:
    """The pack statement as an auditor extracts it (poppler's ``pdfdetach``), into a
    temporary folder (never beside a pack kept in the source tree)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / PACK_STATEMENT
        subprocess.run(
            ["pdfdetach", "-savefile", PACK_STATEMENT, "-o", str(out), str(pdf)], check=True
        )
        return dict(json.loads(out.read_text(encoding="utf-8")))


def test_a_base_rebuilt_by_a_build_in_the_pack_is_a_note(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    apps = _phoenix_days(pack_ledger, 3)
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "example-base", "--project", "example", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert "verified." in r.stderr and "with findings" not in r.stderr, r.stderr

    st = _statement(out)["predicate"]
    assert st["verdictRules"] == 4  # rules 3, and failed builds are findings
    assert st["supportingBuilds"] == []  # the bases' builds are in scope
    assert st["summary"]["overall"] == "Verified"
    assert st["summary"]["findings"] == 0
    text = pdftotext(out)
    for day, app in enumerate(apps[1:], start=2):
        before, base = apps[day - 2], app - 1
        assert (
            f"base image {BASE_REF} changed between entry {before} and entry {app}, "
            f"rebuilt by entry {base} (project example-base)"
        ) in " ".join(text.split())
    assert "Overall verdict: Verified\n" in text or "Overall verdict: Verified " in text

    v = cli(["pack", "verify", str(out), "--json"])
    assert v.exit_code == 0, v.stderr
    verdict = next(c for c in v.json()["checks"] if c["name"] == "verdict")
    # two rebuilt bases, and a secret build argument in each of the six builds
    assert verdict["ok"] and "0 findings and 8 notes" in verdict["detail"], verdict


def test_a_pack_of_the_app_alone_embeds_the_builds_of_its_bases(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """Rules 3: a pack of the app alone embeds, as supporting builds, the builds outside its
    scope that made its base images (the base project's phoenix rebuilds), with their
    inclusion proofs: the pack itself shows where its rebuilt base came from, a note."""
    apps = _phoenix_days(pack_ledger, 3)
    bases = [app - 1 for app in apps]
    out = tmp_path / "app-only.pdf"
    made = _pack(cli, out, "--project", "example")
    assert made["entries"] == apps
    st = _statement(out)["predicate"]
    assert st["scope"]["entries"] == apps
    assert st["supportingBuilds"] == bases
    assert set(bases) <= set(st["evidence"])
    assert st["summary"]["overall"] == "Verified"
    assert st["summary"]["findings"] == 0
    text = " ".join(pdftotext(out).split())
    for day in (1, 2):
        assert (
            f"base image {BASE_REF} changed between entry {apps[day - 1]} and entry "
            f"{apps[day]}, rebuilt by entry {bases[day]} (project example-base)"
        ) in text
    # each app build names the build of its base, and the supporting builds are listed
    for base in bases:
        assert f"built by entry {base} (example-base), a supporting build" in text
    assert "Supporting builds" in text
    v = cli(["pack", "verify", str(out), "--json"])
    assert v.exit_code == 0, v.stderr
    assert v.json()["verdict"]["findings"] == 0 and v.json()["verdict"]["rules"] == 4
    statement = next(c for c in v.json()["checks"] if c["name"] == "pack statement")
    assert statement["detail"].endswith("3 builds and 3 supporting builds"), statement
    assert (v.json()["builds"], v.json()["supporting_builds"]) == (3, 3)
    said = cli(["pack", "verify", str(out)])
    assert "verified (9 checks, 7 envelopes, 3 builds and 3 supporting builds; " in (
        said.stdout + said.stderr
    )


def test_a_base_the_ledger_shows_no_build_of_is_still_a_finding(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A base changed to an image no recorded build made: nothing shows where it came from."""
    apps = _phoenix_days(pack_ledger, 1)
    outside = pack_ledger.add_statement(manifest_variant(7, base_image_id=OTHER_BASE))
    out = tmp_path / "app-only.pdf"
    _pack(cli, out, "--project", "example")
    st = _statement(out)["predicate"]
    assert st["supportingBuilds"] == [apps[0] - 1]  # the first day's base build only
    assert st["summary"]["overall"] == "Verified, with findings"
    assert st["summary"]["findings"] == 1
    text = " ".join(pdftotext(out).split())
    finding = f"base image {BASE_REF} changed between entry {apps[0]} and entry {outside.index}"
    assert finding in text
    assert f"and entry {outside.index}, rebuilt by" not in text
    assert cli(["pack", "verify", str(out)]).exit_code == 0


def test_a_base_changed_to_an_image_built_later_or_elsewhere_is_a_finding(
    pack_ledger: PackLedger, escrow_home: Path
) -> None:
    """The new base must be the image of an *earlier* succeeded build in the pack: an
    image the pack shows built only after the build that used it explains nothing."""
    first = pack_ledger.add_statement(manifest_variant(1, base_image_id=OTHER_BASE))
    later_base = _base_build(7)
    used = pack_ledger.add_statement(manifest_variant(2, base_image_id=_image(later_base)))
    pack_ledger.add_statement(later_base)
    unknown = pack_ledger.add_statement(manifest_variant(3, base_image_id=OTHER_BASE))
    collected = _collect(pack_ledger)
    kinds = [(a.kind, a.text) for a in collected.view.summary.anomalies if a.kind != "secret"]
    assert kinds == [
        (
            "base",
            f"base image {BASE_REF} changed between entry {first.index} and entry {used.index}",
        ),
        (
            "base",
            f"base image {BASE_REF} changed between entry {used.index} and entry {unknown.index}",
        ),
    ]
    assert collected.view.overall == "Verified, with findings"


def test_a_key_retired_since_it_signed_is_a_note_a_revoked_one_a_finding(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    ci, laptop = SigningKey.generate(), SigningKey.generate()
    pack_ledger.ledger.register_key(ci.public, "ci")
    pack_ledger.ledger.register_key(laptop.public, "laptop")
    from escrow.signing.dsse import sign_statement

    by_ci, _ = pack_ledger.ledger.append(sign_statement(manifest_variant(1), ci))
    by_laptop, _ = pack_ledger.ledger.append(sign_statement(manifest_variant(2), laptop))
    pack_ledger.ledger.retire_key(ci.public.keyid, reason="rotated to a new key")
    pack_ledger.ledger.revoke_key(laptop.public.keyid, "the laptop was stolen")
    time.sleep(1.1)  # the pack is made a second after the retirement took effect

    out = tmp_path / "keys.pdf"
    _pack(cli, out, "--project", "example")
    summary = _statement(out)["predicate"]["summary"]
    assert (summary["overall"], summary["findings"]) == ("Verified, with findings", 1)
    text = " ".join(pdftotext(out).split())
    assert (
        f"entry {by_ci.index} is signed by key {ci.public.keyid[:16]}…, retired since "
        "(not revoked: in force when it signed)"
    ) in text
    assert (
        f"entry {by_laptop.index} is signed by key {laptop.public.keyid[:16]}…, now revoked" in text
    )
    findings = text.split("Anomalies that make the verdict")[1].split("Notes")[0]
    assert "now revoked" in findings and "retired since" not in findings
    assert cli(["pack", "verify", str(out)]).exit_code == 0


def test_a_pack_made_before_the_rules_were_versioned_still_verifies() -> None:
    """``pack-verdict-rules-1.pdf`` was made by escrow at commit 7b2e54f (before verdict
    rules 2) from a ledger of two phoenix days, a third base from outside and a retired
    key: by rules 1, three findings.  By rules 2 the same evidence gives one finding; the
    pack states no rules, so it is judged by rules 1 and verifies as it was made."""
    assert "verdictRules" not in _statement(RULES_1_PACK)["predicate"]
    r = run_cli(["pack", "verify", str(RULES_1_PACK), "--json"])
    assert r.exit_code == 0, r.stderr
    verdict = next(c for c in r.json()["checks"] if c["name"] == "verdict")
    assert verdict["detail"] == (
        "Verified, with findings, 3 findings and 5 notes: as recomputed from the evidence"
    )


def _collect(pack_ledger: PackLedger, *projects: str) -> Collected:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    when = datetime.now(UTC) + timedelta(minutes=1)
    return collect(pack_ledger.ledger, PackRequest(generated_at=when, projects=projects), view)


def _forged(
    pack_ledger: PackLedger,
    tmp_path: Path,
    rules: Any,
    *projects: str,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """An honest pack (of ``projects``; all by default), its statement's ``verdictRules``
    changed to ``rules`` (and ``edit`` applied to its predicate) and signed again with the
    operator's own pack key (as a dishonest operator can)."""
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    collected = _collect(pack_ledger, *projects)
    files = []
    for f in attachments_for(collected):
        if f.name == PACK_STATEMENT:
            st = json.loads(f.data)
            st["predicate"]["verdictRules"] = rules
            if edit is not None:
                edit(st["predicate"])
            f = AttachmentFile(f.name, json.dumps(st).encode(), f.description)
        files.append(f)
    pdf = render_pdf(collected.view, files, datetime.now(UTC), strict=True).pdf
    out = tmp_path / f"rules-{rules}.pdf"
    out.write_bytes(sign_pdf(pdf, signer))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "signer.pem")
    return out


def test_a_pack_judged_by_rules_2_but_stating_rules_1_is_refused(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """Its pages count the rebuilt base as a note; by the rules it states, it is a finding."""
    _phoenix_days(pack_ledger, 2)
    r = run_cli(["pack", "verify", str(_forged(pack_ledger, tmp_path, 1))])
    assert r.exit_code == 1
    assert (
        'verdict: the pack statement states the verdict "Verified", '
        'but its evidence gives "Verified, with findings"'
    ) in r.stderr, r.stderr


@pytest.mark.parametrize("rules", [5, "3", None])
def test_rules_this_escrow_does_not_know_are_one_sentence(
    pack_ledger: PackLedger, tmp_path: Path, rules: Any
) -> None:
    _phoenix_days(pack_ledger, 1)
    r = run_cli(["pack", "verify", str(_forged(pack_ledger, tmp_path, rules)), "--json"])
    assert r.exit_code == 1, r.stderr
    verdict = next(c for c in r.json()["checks"] if c["name"] == "verdict")
    assert not verdict["ok"]
    assert verdict["detail"].startswith(
        f"the pack statement states verdict rules {json.dumps(rules)}, which this escrow ("
    ), verdict
    assert "does not know: verify it with the escrow that made it" in verdict["detail"]


def test_pack_verify_json_gives_the_verdict_it_recomputed(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """An auditor's script reads the pack's verdict, not only that the file checks out."""
    _phoenix_days(pack_ledger, 2)
    pack_ledger.add_statement(manifest_variant(9, base_image_id=OTHER_BASE))
    out = tmp_path / "pack.pdf"
    _pack(cli, out, "--project", "example-base", "--project", "example")
    r = cli(["pack", "verify", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["verdict"] == {
        "overall": "Verified, with findings",
        "findings": 1,  # the base from outside the pack
        "rebuilds_failed": 0,
        "notes": 6,  # the rebuilt base, and a secret build argument in each of five builds
        "rules": 4,
    }
    old = run_cli(["pack", "verify", str(RULES_1_PACK), "--json"]).json()
    assert old["verdict"] == {
        "overall": "Verified, with findings",
        "findings": 3,
        "rebuilds_failed": 0,
        "notes": 5,
        "rules": 1,
    }
    forged = run_cli(["pack", "verify", str(_forged(pack_ledger, tmp_path, 1)), "--json"])
    assert forged.exit_code == 1 and forged.json()["verdict"] is None


def test_each_builds_base_images_name_the_build_in_the_pack_that_made_them(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The first day's base too, which changed nothing: the table of a build's base images
    links each one made by an earlier build of the pack to that build's section."""
    apps = _phoenix_days(pack_ledger, 2)
    outside = pack_ledger.add_statement(manifest_variant(9, base_image_id=OTHER_BASE))
    out = tmp_path / "pack.pdf"
    _pack(cli, out, "--project", "example-base", "--project", "example")
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout

    def section(index: int) -> str:  # a build's section, however many pages it takes
        start = text.index(f"Entry {index} — example — succeeded")
        end = text.find("6. Keys in force", start)
        following = text.find(" — example — succeeded", start + 10)
        return text[start : min(x for x in (end, following) if x > 0)]

    for app in apps:
        assert f"built by entry {app - 1} (example-base), in this pack" in section(app)
    assert "built by entry" not in section(outside.index)
    assert cli(["pack", "verify", str(out)]).exit_code == 0


def test_a_pack_judged_by_rules_2_still_verifies_as_made() -> None:
    """``pack-verdict-rules-2.pdf`` was made by escrow at commit b71aa32 (verdict rules 2,
    before supporting builds) from two phoenix days, of the app alone: its rebuilt base is
    a finding, as rules 2 judged it, and it verifies as it was made."""
    st = _statement(RULES_2_PACK)["predicate"]
    assert st["verdictRules"] == 2 and "supportingBuilds" not in st
    r = run_cli(["pack", "verify", str(RULES_2_PACK), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["verdict"] == {
        "overall": "Verified, with findings",
        "findings": 1,
        "rebuilds_failed": 0,
        "notes": 2,
        "rules": 2,
    }


def test_a_pack_judged_by_rules_3_but_stating_rules_2_is_refused(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """Rules 2 trace a base only to a build in scope: by them, the rebuilt base of a pack of
    the app alone is a finding, which its pages count as a note."""
    _phoenix_days(pack_ledger, 2)
    r = run_cli(["pack", "verify", str(_forged(pack_ledger, tmp_path, 2, "example"))])
    assert r.exit_code == 1
    assert (
        'verdict: the pack statement states the verdict "Verified", '
        'but its evidence gives "Verified, with findings"'
    ) in r.stderr, r.stderr


def test_a_pack_whose_statement_hides_its_supporting_builds_is_refused(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    apps = _phoenix_days(pack_ledger, 2)

    def hide(predicate: dict[str, Any]) -> None:
        predicate["supportingBuilds"] = []

    r = run_cli(["pack", "verify", str(_forged(pack_ledger, tmp_path, 3, "example", edit=hide))])
    assert r.exit_code == 1
    assert (
        "pack statement: its supporting builds are not the build manifests embedded outside "
        f"its scope ({apps[0] - 1}, {apps[1] - 1})"
    ) in r.stderr, r.stderr


def test_a_supporting_build_signed_by_a_key_revoked_since_is_not_counted(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A revoked key's entries prove nothing: the base it built is shown, not taken as the
    provenance of the rebuilt base, which stays a finding."""
    from escrow.signing.dsse import sign_statement

    day1 = _phoenix_days(pack_ledger, 1)[0]
    rogue = SigningKey.generate()
    pack_ledger.ledger.register_key(rogue.public, "rogue")
    base = _base_build(2)
    made, _ = pack_ledger.ledger.append(sign_statement(base, rogue))
    app = pack_ledger.add_statement(manifest_variant(2, base_image_id=_image(base)))
    pack_ledger.ledger.revoke_key(rogue.public.keyid, "the key leaked")
    out = tmp_path / "app-only.pdf"
    _pack(cli, out, "--project", "example")
    st = _statement(out)["predicate"]
    assert st["supportingBuilds"] == [day1 - 1, made.index]
    assert (st["summary"]["overall"], st["summary"]["findings"]) == ("Verified, with findings", 1)
    text = " ".join(pdftotext(out).split())
    assert f"base image {BASE_REF} changed between entry {day1} and entry {app.index}" in text
    assert f"and entry {app.index}, rebuilt by" not in text
    flat = "".join(text.split())
    assert f"notcounted:itissignedbykey{rogue.public.keyid[:16]}…,revokedsince" in flat
    # the key that signed it is listed, with the build it signed in the pack
    keys = flat[flat.index("6.KeysinforceSigningkeysinforce") :]
    assert f"rogue—revokedKeyID{rogue.public.keyid}" in keys
    assert "Buildsitsignedinthispack1" in keys.split("rogue—revoked")[1]
    assert cli(["pack", "verify", str(out)]).exit_code == 0


def test_a_base_build_whose_signature_fails_is_no_supporting_build(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A record that does not verify could never be evidence: it is left out of the pack,
    and the base it would have traced stays a finding (the pack still verifies)."""
    import sqlite3

    apps = _phoenix_days(pack_ledger, 2)
    tampered = apps[1] - 1  # the second day's base build
    db = sqlite3.connect(pack_ledger.home / "ledger.db")
    with db:
        (data,) = db.execute(
            "SELECT envelope FROM ledger_entry WHERE idx = ?", (tampered,)
        ).fetchone()
        data = bytes(data)
        pos = data.index(b'"sig":"') + 12  # the signature changed, the statement intact
        flipped = data[:pos] + (b"A" if data[pos : pos + 1] != b"A" else b"B") + data[pos + 1 :]
        db.execute("UPDATE ledger_entry SET envelope = ? WHERE idx = ?", (flipped, tampered))
    db.close()
    out = tmp_path / "app-only.pdf"
    _pack(cli, out, "--project", "example")
    st = _statement(out)["predicate"]
    assert st["supportingBuilds"] == [apps[0] - 1]
    assert tampered not in st["evidence"]
    assert (st["summary"]["overall"], st["summary"]["findings"]) == ("Verified, with findings", 1)
    assert cli(["pack", "verify", str(out)]).exit_code == 0


def test_a_pack_with_supporting_builds_renders_again_byte_for_byte(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The supporting builds are those the ledger held at the pack's checkpoint: days
    appended since change nothing in a pack rendered again at that size."""
    _phoenix_days(pack_ledger, 2)
    size = pack_ledger.ledger.size()
    args = ["pack", "--project", "example", "--generated-at", "2026-12-04T16:00:00Z"]
    then = tmp_path / "then.pdf"
    assert cli([*args, "--render-only", "-o", str(then)]).exit_code == 0
    for day in (3, 4):  # two more days, the app built on each day's base
        base = _base_build(day)
        pack_ledger.add_statement(base)
        pack_ledger.add_statement(manifest_variant(day, base_image_id=_image(base)))
    assert pack_ledger.ledger.size() == size + 4
    now = tmp_path / "now.pdf"
    assert cli([*args, "--render-only", "-o", str(now)]).exit_code == 0
    assert len(_statement(now)["predicate"]["supportingBuilds"]) == 4
    again = tmp_path / "again.pdf"
    r = cli([*args, "--tree-size", str(size), "--render-only", "-o", str(again)])
    assert r.exit_code == 0, r.stderr
    assert again.read_bytes() == then.read_bytes()


def test_the_build_of_an_image_copy_from_copied_from_is_a_supporting_build(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A ``COPY --from=IMAGE`` input is shown with the build that made it, as a base is;
    it is not judged (the verdict's rules are about base images)."""
    data = manifest_variant(5, project="data")
    data["predicate"]["inputs"]["baseImages"] = []
    made = pack_ledger.add_statement(data)
    app = manifest_variant(6)
    app["predicate"]["inputs"]["copyFromImages"] = [
        {
            "stage": 0,
            "line": 4,
            "reference": "escrow-example/data:latest",
            "imageId": _image(data),
            "repoDigest": None,
        }
    ]
    used = pack_ledger.add_statement(app)
    out = tmp_path / "app.pdf"
    _pack(cli, out, "--project", "example")
    st = _statement(out)["predicate"]
    assert st["supportingBuilds"] == [made.index]
    assert st["summary"]["findings"] == 0
    text = " ".join(pdftotext(out).split())
    assert f"built by entry {made.index} (data), a supporting build" in text
    assert "Used by" in text and f"{used.index}" in text
    assert cli(["pack", "verify", str(out)]).exit_code == 0
