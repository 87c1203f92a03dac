"""The locale registry: one place defines a locale, and a new one is one entry plus its data files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.locales import DATA_DIR, LOCALES, REGISTRY, LocaleDataError, load

ROOT = Path(__file__).resolve().parents[1]

GERMAN = {
    "de.toml": textwrap.dedent(
        r"""
        name = "Deutsch"
        script = "latin"
        language = "de"
        detector = "GERMAN"
        decimal = ","
        group = "."
        space_groups = false
        number_words = "de"
        fallback = ["en"]
        attribution = ['quelle\s*:']
        attribution_stems = ["quelle"]
        disclaimer = "en"
        """
    ),
    "words/de.function.txt": "der\ndie\ndas\nund\nist\nnicht\nmit\nvon\nden\nzu\nim\nfür\nauf\nein\neine\nsich\n",
    "words/de.stopwords.txt": "der\ndie\ndas\njanuar\nfebruar\nmärz\nmontag\ndienstag\n",
    "numbers/de.tsv": "Milliarden?{latin_end}\t1e9\nMillionen?{latin_end}\t1e6\nMrd\\.?\t1e9\nMio\\.?\t1e6\n",
}

# Run in a fresh interpreter with BABELWIRE_LOCALE_DATA set: every module reads the registry
# it loads, as the installed program would.
PROBE = """
from aggregator import LOCALES
from aggregator.dedupe.features import STOPWORDS
from aggregator.dedupe.numbers import extract_figures
from aggregator.normalize import detect_language
from aggregator.normalize.attribution import original_link
from api.locales import FALLBACKS, Step, negotiate, parse_locale, valid_locales_message

german = ("Die Bitcoin-ETFs in den USA verzeichneten am Montag Zuflüsse von 1,5 Milliarden Dollar, "
          "und das ist nicht der erste Rekord: die Anleger kaufen sich mit den Fonds ein, sagen Analysten.")
assert LOCALES[-1] == "de", LOCALES
assert detect_language(german, "de") == "de"
assert detect_language(german, "en") == "de", detect_language(german, "en")
assert [f.value for f in extract_figures("1,5 Milliarden und 84.500 BTC", "de")] == [1.5e9, 84500.0]
assert FALLBACKS["de"].steps == (Step("en"),) and not FALLBACKS["de"].never
assert parse_locale("DE") == "de" and negotiate("de-CH, fr;q=0.5") == "de"
assert "de" in valid_locales_message()
assert "januar" in STOPWORDS
assert original_link('<p>Quelle: <a href="https://news.example/a">Bericht</a></p>', None) == "https://news.example/a"
print("ok")
"""


def _run(args: list[str], data: Path | None, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **extra)
    env.pop("BABELWIRE_LOCALE_DATA", None)
    if data is not None:
        env["BABELWIRE_LOCALE_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def _with_german(tmp_path: Path) -> Path:
    data = tmp_path / "locale_data"
    shutil.copytree(DATA_DIR, data)
    with (data / "locales.txt").open("a", encoding="utf-8") as f:
        f.write("de\n")
    for name, text in GERMAN.items():
        (data / name).write_text(text, encoding="utf-8")
    return data


def test_the_thirteen_locales_in_gate_order() -> None:
    assert LOCALES == (
        "zh-CN",
        "en",
        "vi",
        "zh-TW",
        "es",
        "ru",
        "fr",
        "pt-PT",
        "id",
        "ja",
        "ar",
        "uk",
        "pt-BR",
    )
    assert {loc.script for loc in REGISTRY} == {"latin", "cjk", "cyrillic", "arabic"}
    assert REGISTRY.detected_locale("pt") == "pt-BR"
    assert REGISTRY.parse("pt_pt") == "pt-PT"


def test_a_fourteenth_locale_is_one_entry_plus_its_data_files(tmp_path: Path) -> None:
    data = _with_german(tmp_path)
    probe = _run(["-c", PROBE], data)
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr[-2000:]
    # Without the entry, the same probe fails: the registry is what the modules read.
    plain = _run(["-c", PROBE], None)
    assert plain.returncode != 0


def test_a_source_in_the_new_locale_is_accepted_by_the_cli(tmp_path: Path) -> None:
    data = _with_german(tmp_path)
    db = {"BABELWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/babelwire.sqlite"}
    args = [
        "main.py",
        "sources",
        "add",
        "https://news.example/de.xml",
        "--outlet",
        "coindesk",
        "--locale",
        "de",
    ]
    assert _run(["main.py", "migrate"], data, **db).returncode == 0
    refused = _run(args, None, **db)
    assert refused.returncode == 2 and "unknown locale 'de'" in refused.stderr
    added = _run(args, data, **db)
    assert added.returncode == 0, added.stderr
    listed = _run(["main.py", "sources", "list"], data, **db)
    assert "\tde\thttps://news.example/de.xml" in listed.stdout


def test_bad_locale_data_is_one_clear_error(tmp_path: Path) -> None:
    data = _with_german(tmp_path)
    (data / "de.toml").write_text(GERMAN["de.toml"].replace('fallback = ["en"]', 'fallback = ["xx"]'))
    with pytest.raises(LocaleDataError, match=r"de\.toml: fallback step 'xx' names an unknown locale"):
        load(data)
    (data / "de.toml").unlink()
    with pytest.raises(LocaleDataError, match=r"de\.toml: cannot read locale de"):
        load(data)


def test_bad_locale_data_stops_the_cli_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "locale_data"
    shutil.copytree(DATA_DIR, broken)
    (broken / "fr.toml").write_text("name = [unclosed\n", encoding="utf-8")
    env = dict(
        os.environ, BABELWIRE_LOCALE_DATA=str(broken), BABELWIRE_DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite"
    )
    done = subprocess.run(
        [sys.executable, "main.py", "sources", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: BABELWIRE_LOCALE_DATA:") and "fr.toml" in lines[0]
