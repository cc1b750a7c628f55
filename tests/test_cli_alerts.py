"""`kontext-bot admin alerts` as an operator runs it: set, show, change, turn off; bad values exit 2
with one clear line, and showing never creates the database."""

from __future__ import annotations

import pytest

from tests.cli_support import one_error_line, run_cli


async def test_alerts_are_set_shown_changed_and_turned_off(tmp_path):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}

    async def cli(*args: str) -> tuple[int, str, str]:
        return await run_cli("admin", "alerts", "--guild", "7", *args, env=env, cwd=tmp_path)

    code, out, err = await cli()
    assert (code, out.strip()) == (0, "Guild 7: budget alerts and reports are off."), err
    assert not (tmp_path / "k.db").exists()  # showing only reads

    code, out, err = await cli("--channel", "555")
    assert code == 0, err
    assert out.strip() == (
        "Guild 7: in channel 555, alerts at 50%, 80%, 100% of each budget and on provider overruns."
    )
    code, out, err = await cli("--channel", "555", "--at", "90,100", "--report", "weekly")
    assert code == 0, err
    expected = (
        "Guild 7: in channel 555, alerts at 90%, 100% of each budget and on provider overruns; "
        "a weekly usage report."
    )
    assert out.strip() == expected
    code, out, _ = await cli()
    assert out.strip() == expected  # shown as set
    code, out, _ = await cli("--channel", "556", "--at", "off")  # reports only, in another channel
    assert out.strip() == "Guild 7: in channel 556, a weekly usage report."
    code, out, err = await cli("--off")
    assert (code, out.strip()) == (0, "Guild 7: budget alerts and reports are off."), err
    code, out, _ = await cli("--channel", "555")  # on again: the defaults, not the old values
    assert "alerts at 50%, 80%, 100%" in out and "report" not in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--at", "50,80"], "--channel is required"),
        (["--channel", "5", "--at", "80,50"], "--at must be up to 10 whole percentages from 1 to 1000"),
        (["--channel", "5", "--at", "50,50"], "in rising order"),
        (["--channel", "5", "--at", "0,50"], "from 1 to 1000"),
        (["--channel", "5", "--at", "50,1001"], "from 1 to 1000"),
        (["--channel", "5", "--at", "half"], "(you gave 'half')"),
        (["--off", "--channel", "5"], "--off turns alerts and reports off; give it alone"),
        (["--channel", "5", "--report", "daily"], "--report: invalid choice: 'daily'"),
        (["--channel", "general"], "--channel: must be a Discord id"),
    ],
)
async def test_bad_values_exit_2_with_one_clear_line(tmp_path, args, says):
    env = {"KONTEXT_DB": str(tmp_path / "k.db")}
    code, out, err = await run_cli("admin", "alerts", "--guild", "7", *args, env=env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert says in one_error_line(err)
    code, out, _ = await run_cli("admin", "alerts", "--guild", "7", env=env, cwd=tmp_path)
    assert out.strip() == "Guild 7: budget alerts and reports are off."  # nothing was changed
