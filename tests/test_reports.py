"""The report directory, replay from a report, and JUnit XML: what a CI user gets when the
harness fails, checked as that user would read it (the JSON against its schema, the page
in a real browser, the XML against the xunit2 schema)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from helpers import run_cli
from sage_lifecycle.artifacts import FORMAT, ReportError, read_replay

DOCS = Path(__file__).resolve().parent.parent / "docs"
DATA = Path(__file__).resolve().parent / "data"

# The tests that read one failing run share a worker under xdist, so it runs once.
pytestmark = pytest.mark.xdist_group("pre_878_report")


@pytest.fixture(scope="module")
def pre_878(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A failing conformance run: SAGE's pre-#878 bug, one search that fails and one that
    passes, reports on, JUnit XML written (``junit.xml`` beside ``reports``)."""
    where = tmp_path_factory.mktemp("pre_878")
    done = run_cli(
        where,
        "--target",
        "mutant:pre_878",
        "--profile",
        "ci",
        "--properties",
        "cleanup-exactly-once,no-hang",
        "--report",
        "reports",
        "--",
        f"--junitxml={where / 'junit.xml'}",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    return where / "reports", done


def _record(reports: Path) -> dict[str, Any]:
    files = sorted(reports.glob("*.json"))
    assert [f.name for f in files] == ["mutant_pre_878-cleanup-exactly-once.json"]
    return dict(json.loads(files[0].read_text(encoding="utf-8")))


def test_a_failing_search_writes_json_that_validates_against_the_schema(
    pre_878: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    import jsonschema

    reports, done = pre_878
    record = _record(reports)
    schema = json.loads((DOCS / "report.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(record)
    assert record["format"] == FORMAT
    assert record["target"] == {"name": "mutant:pre_878", "version": "pytest-sage-lifecycle 0.2.0"}
    assert record["context"]["profile"] == "ci"
    assert record["context"]["seed"] == "derandomized"
    # The pinned counterexample: one service, one item, the source's end opened.
    assert record["topology"]["text"] == (
        "service s0: setup ok, cleanup ok\npipeline 0: source(1 items) -> sink()"
    )
    assert record["schedule"]["steps"] == [{"action": "open", "what": "end:p0"}]
    assert record["schedule"]["ending"]["calls"] == ["submit"]
    seqs = {e["seq"] for e in record["events"]}
    (v,) = record["violations"]
    assert v["message"] == "service 's0' was never cleaned up"
    assert {w["seq"] for w in v["witnesses"]} <= seqs
    assert v["explanation"]["let"][0].startswith("A = #")
    json_path = reports / "mutant_pre_878-cleanup-exactly-once.json"
    assert record["replay"]["command"] == (
        f"sage-lifecycle --target mutant:pre_878 --replay {json_path}"
    )
    # The failure text and the table point at the files.
    assert f"report: {json_path}" in done.stdout
    assert "reports: 1 failing example(s) written to" in done.stdout


def test_the_schema_refuses_what_it_must(
    pre_878: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """The schema can fail: a record without its events, or with a witness that has no
    name, does not validate."""
    import jsonschema

    record = _record(pre_878[0])
    schema = json.loads((DOCS / "report.schema.json").read_text(encoding="utf-8"))
    broken = {k: v for k, v in record.items() if k != "events"}
    with pytest.raises(jsonschema.ValidationError, match="'events' is a required property"):
        jsonschema.validate(broken, schema)
    record["violations"][0]["witnesses"][0].pop("name")
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        jsonschema.validate(record, schema)


def test_the_page_is_self_contained(pre_878: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    page = (pre_878[0] / "mutant_pre_878-cleanup-exactly-once.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.I)
    assert "@import" not in page
    assert "url(" not in page


def _browser() -> Any:
    """Playwright's Chromium on the system's browser, or skip saying what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs Playwright (the [test] extra) to render the page in a browser")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("needs a Chromium browser (Debian: apt-get install chromium; .ci/run does)")
    return sync_playwright, exe


def test_the_page_shows_one_lane_per_thread_and_the_witnesses_in_a_browser(
    pre_878: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """Rendered by headless Chromium: what the page shows, measured on the page (boxes,
    computed colours) and on its screenshot's pixels, not read from the HTML source."""
    from PIL import Image

    sync_playwright, exe = _browser()
    reports = pre_878[0]
    record = _record(reports)
    threads = list(dict.fromkeys(e["thread"] for e in record["events"]))
    witnesses = {w["seq"] for v in record["violations"] for w in v["witnesses"]}
    page_file = reports / "mutant_pre_878-cleanup-exactly-once.html"
    shot = tmp_path / "timeline.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_file.as_uri())
            seen = page.evaluate(
                """() => {
                  const box = (el) => { const r = el.getBoundingClientRect();
                    return {x: r.x, y: r.y, w: r.width, h: r.height}; };
                  const shown = (el) => { const r = el.getBoundingClientRect();
                    const s = getComputedStyle(el);
                    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'
                      && s.display !== 'none'; };
                  return {
                    lanes: [...document.querySelectorAll('g.lane')].map(g => ({
                      thread: g.dataset.thread, box: box(g), shown: shown(g),
                      label: g.querySelector('.lane-label').textContent})),
                    witnesses: [...document.querySelectorAll('circle.witness')].map(c => ({
                      seq: Number(c.dataset.seq), box: box(c), shown: shown(c),
                      stroke: getComputedStyle(c).stroke})),
                    returned: [...document.querySelectorAll('line.returned')].map(box),
                    picture: box(document.querySelector('.picture')),
                    why: box(document.querySelector('aside.why')),
                    whyText: document.querySelector('aside.why').innerText,
                  };
                }"""
            )
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    # One lane per thread, each drawn, in the order the threads first appear.
    assert [lane["thread"] for lane in seen["lanes"]] == threads
    assert all(lane["shown"] for lane in seen["lanes"])
    ys = [lane["box"]["y"] for lane in seen["lanes"]]
    assert ys == sorted(ys)
    assert len(set(ys)) == len(ys)
    # Every witness ringed in red, inside the lane of its thread.
    assert {w["seq"] for w in seen["witnesses"]} == witnesses
    by_seq = {e["seq"]: e for e in record["events"]}
    lanes = {lane["thread"]: lane["box"] for lane in seen["lanes"]}
    for w in seen["witnesses"]:
        assert w["shown"], w
        assert w["stroke"] == "rgb(213, 0, 0)", w
        lane = lanes[by_seq[w["seq"]]["thread"]]
        middle = w["box"]["y"] + w["box"]["h"] / 2
        assert lane["y"] <= middle <= lane["y"] + lane["h"], (w, lane)
    # The ending call's return: one line across every lane.
    (line,) = seen["returned"]
    assert line["y"] <= min(ys)
    assert line["y"] + line["h"] >= max(
        lane["box"]["y"] + lane["box"]["h"] for lane in seen["lanes"]
    )
    # The explanation beside the picture, not under it.
    assert seen["why"]["x"] >= seen["picture"]["x"] + seen["picture"]["w"]
    assert seen["why"]["y"] < seen["picture"]["y"] + seen["picture"]["h"]
    assert "Let" in seen["whyText"]
    assert "Then" in seen["whyText"]
    assert "which contradicts cleanup-exactly-once" in seen["whyText"]
    # And on the screen: the witness's red ring is in the screenshot's pixels.
    image = Image.open(shot).convert("RGB")
    for w in seen["witnesses"]:
        b = w["box"]
        region = image.crop((int(b["x"]), int(b["y"]), int(b["x"] + b["w"]), int(b["y"] + b["h"])))
        pixels = [
            region.getpixel((x, y)) for x in range(region.width) for y in range(region.height)
        ]
        red = [
            px
            for px in pixels
            if isinstance(px, tuple) and px[0] > 180 and px[1] < 60 and px[2] < 60
        ]
        assert len(red) >= 20, (w, len(red))


def test_replay_from_the_report_reproduces_the_bug_and_passes_the_fix(
    pre_878: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    json_path = pre_878[0] / "mutant_pre_878-cleanup-exactly-once.json"
    run, target = read_replay(json_path)
    assert (run.property, target) == ("cleanup-exactly-once", "mutant:pre_878")
    bug = run_cli(tmp_path, "--replay", str(json_path), "--replay-runs", "10")
    assert bug.returncode == 1, bug.stdout + bug.stderr
    assert "replay of one recorded run (cleanup-exactly-once), 10 times" in bug.stdout
    assert re.search(
        r"cleanup-exactly-once +FAIL +service 's0' was never cleaned up \(reproduced 10/10\)",
        bug.stdout,
    ), bug.stdout
    fixed = run_cli(tmp_path, "--replay", str(json_path), "--target", "reference")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert re.search(
        r"cleanup-exactly-once +PASS +cleanup-exactly-once held on 10/10 replays of the "
        r"recorded run \(one schedule, not a search\)",
        fixed.stdout,
    ), fixed.stdout


def test_a_report_that_is_not_one_is_a_one_line_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(ReportError, match="has format 'something else'"):
        read_replay(bad)
    done = run_cli(tmp_path, "--replay", str(tmp_path / "missing.json"))
    assert done.returncode == 4, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ERROR: --lifecycle-replay: cannot read report")
    assert "Traceback" not in done.stderr + done.stdout


def _check_junit(xml: Path, profile: str, seed: str) -> None:
    import xmlschema

    xmlschema.XMLSchema(DATA / "xunit2.xsd").validate(str(xml))
    suite = ElementTree.fromstring(xml.read_text(encoding="utf-8")).find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["lifecycle.target"] == "mutant:pre_878"
    assert props["lifecycle.target_version"] == "pytest-sage-lifecycle 0.2.0"
    assert props["lifecycle.seed"] == seed
    assert props["lifecycle.profile"] == profile
    assert str(props["lifecycle.verdict.cleanup-exactly-once"]).startswith("FAIL (")
    assert re.fullmatch(
        r"PASS \(\d+ of \d+ exercised it\)", str(props["lifecycle.verdict.no-hang"])
    )
    assert str(props["lifecycle.verdict.white-box-dispatcher"]).startswith("FAIL")
    assert not suite.findall("testcase/properties")


def test_junit_xml_carries_the_verdicts_and_stays_valid_xunit2(
    pre_878: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _check_junit(pre_878[0].parent / "junit.xml", profile="ci", seed="derandomized")


@pytest.mark.slow
def test_junit_xml_stays_valid_xunit2_under_xdist(tmp_path: Path) -> None:
    """Each xdist worker writes its own testsuite: the verdicts still reach the file."""
    xml = tmp_path / "junit.xml"
    done = run_cli(
        tmp_path,
        "--target",
        "mutant:pre_878",
        "--profile",
        "dev",
        "--properties",
        "cleanup-exactly-once,no-hang",
        "--",
        "--hypothesis-seed=0",
        f"--junitxml={xml}",
        "-n",
        "2",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    _check_junit(xml, profile="dev", seed="0")


def test_the_schema_check_of_junit_xml_can_fail(tmp_path: Path) -> None:
    """What per-test record_property writes is refused: the check has teeth."""
    import xmlschema

    bad = tmp_path / "bad.xml"
    bad.write_text(
        '<testsuites><testsuite name="s" tests="1"><testcase name="t">'
        '<properties><property name="a" value="b"/></properties></testcase>'
        "</testsuite></testsuites>",
        encoding="utf-8",
    )
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        xmlschema.XMLSchema(DATA / "xunit2.xsd").validate(str(bad))


def test_the_table_counts_what_exercised_each_property_as_hypothesis_does(tmp_path: Path) -> None:
    """Each row's situations, counted in the table and as Hypothesis events: the same
    numbers in both."""
    done = run_cli(
        tmp_path,
        "--profile",
        "dev",
        "--properties",
        "no-early-return",
        "--",
        "--hypothesis-seed=0",
        "--hypothesis-show-statistics",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = re.search(r"no-early-return +PASS +(\d+) topologies, (\d+) exercised it", done.stdout)
    assert row is not None, done.stdout
    situation = "the ending call was pending while a cleanup was parked"
    counted = re.search(rf"^ +(\d+)  {situation}$", done.stdout, re.M)
    assert counted is not None, done.stdout
    assert 0 < int(counted[1]) <= int(row[2])
    # Hypothesis's statistics name the same situation among the events it saw.
    assert re.search(rf"\* +[\d.]+%, no-early-return: {situation}", done.stdout), done.stdout
