"""The usage report as people read it: who paid, in words."""

from __future__ import annotations

from bot.reports import UsageReport
from storage import UsageRow


def row(key: str, cost: int = 0) -> UsageRow:
    return UsageRow(key, jobs=1, succeeded=1, images=1, cost_micros=cost, refused=0, failed=0, cancelled=0)


def test_by_team_names_each_payer_and_keeps_the_keys_for_scripts():
    report = UsageReport(
        "team", (row("team:design", 40_000), row("free"), row("guild", 97_223), row("-"), row("operator"))
    )
    table = report.to_table()
    assert table.splitlines()[0].startswith("paid by")
    for words in ("team design", "free images", "server budget", "nobody (refused)", "operator (CLI)"):
        assert words in table
    assert "$0.10" in table  # a sum: to the cent
    csv_keys = [line.split(",")[0] for line in report.to_csv().splitlines()[1:]]
    assert csv_keys == ["team:design", "free", "guild", "-", "operator"]


def test_other_groupings_show_their_keys_as_they_are():
    table = UsageReport("model", (row("black-forest-labs/flux-kontext-pro"),)).to_table()
    assert table.splitlines()[0].startswith("model") and "flux-kontext-pro" in table
