"""Results in: bad rows rejected with their reasons while the good ones land, a re-sent file adds
nothing, the push path lands through campaign_results, and the CLI says what happened."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import pytest

from predict_pipeline.campaigns.intake import read_results, receive_push, submit
from predict_pipeline.campaigns.results import ingest
from predict_pipeline.cli import main
from predict_pipeline.defs.campaigns import campaign_results, campaign_results_sensor
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.sources.push.decode import UploadError
from tests.support.campaigns import cli_environment, make_campaign, make_user
from tests.support.feeds import USER_ID

NOW = datetime(2025, 4, 1, tzinfo=UTC)
HEADER = (
    "campaign,variant,period_start,period_end,impressions,clicks,conversions,engagements,spend,"
    "revenue\n"
)


def _counts(conn) -> tuple[int, int]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM prediction_campaign_results),"
        " (SELECT count(*) FROM predict_meta.campaign_result_submissions)"
    ).fetchone()


def _upload(conn, text: str, user=USER_ID, name="week.csv"):
    rows = read_results(text.encode(), name, None)
    ids = submit(conn, rows, submitted_by=user, channel="upload", received_at=NOW)
    return ingest(conn, now=NOW, submission_ids=ids)


def test_bad_rows_are_rejected_with_their_reasons_and_the_good_ones_land(conn):
    campaign, variants = make_campaign(conn, USER_ID, "Spring drop", variants=("A", "B", "C"))
    stranger = make_user(conn, "stranger")
    theirs, _ = make_campaign(conn, stranger, "Not yours", variants=("A",))
    # A result already stored for A in the first week of March.
    first = _upload(conn, HEADER + "Spring drop,A,2025-03-01,2025-03-07,1000,30,3,45,20.00,90\n")
    assert first.count("LANDED") == 1
    report = _upload(
        conn,
        HEADER
        + "Spring drop,A,2025-03-08,2025-03-14,1200,40,4,50,24.00,100\n"  # 2 (see line 7)
        + "Spring drop,B,2025-03-01,2025-03-07,900,20,1,30,18.00,45.5\n"  # 3 good
        + "Spring drop,C,2025-03-01,2025-03-07,-5,0,0,0,0,0\n"  # 4 negative count
        + "Spring drop,C,2025-03-08,2025-03-14,100,120,0,0,0,0\n"  # 5 clicks > impressions
        + "Spring drop,C,2025-03-15,2025-03-21,100,10,11,0,0,0\n"  # 6 conversions > clicks
        + "Spring drop,A,2025-03-05,2025-03-11,100,10,1,0,0,0\n"  # 7 overlaps stored + line 2
        + "Spring drop,B,2025-03-10,2025-03-16,100,10,1,0,0,0\n"  # 8 overlaps line 9
        + "Spring drop,B,2025-03-15,2025-03-21,100,10,1,0,0,0\n"  # 9 overlaps line 8
        + "Spring drop,D,2025-03-01,2025-03-07,100,10,1,0,0,0\n"  # 10 no variant D
        + f"{theirs},A,2025-03-01,2025-03-07,100,10,1,0,0,0\n"  # 11 another user's campaign
        + "Spring drop,C,2025-03-22,2025-03-28,lots,10,1,0,0,0\n"  # 12 not a number
        + "Spring drop,C,2025-03-29,2025-03-28,100,10,1,0,0,0\n",  # 13 ends before it starts
    )
    assert report.statuses == {"LANDED": 1, "REJECTED": 11}
    reasons = {r["origin"]["line"]: r["reasons"] for r in report.rejected}
    assert reasons[4] == ["impressions is negative (-5)"]
    assert reasons[5] == ["clicks (120) exceed impressions (100)"]
    assert reasons[6] == ["conversions (11) exceed clicks (10)"]
    assert reasons[7] == [
        "period: overlaps the stored result of 2025-03-01T00:00Z .. 2025-03-08T00:00Z for this "
        "variant",
        "period: overlaps week.csv line 2 for the same variant",
    ]
    assert reasons[8] == ["period: overlaps week.csv line 9 for the same variant"]
    assert reasons[9] == ["period: overlaps week.csv line 8 for the same variant"]
    # Line 2 is rejected too: line 7 overlaps it, and neither can be trusted over the other.
    assert reasons[2] == ["period: overlaps week.csv line 7 for the same variant"]
    assert reasons[10] == ["variant: no variant D in this campaign"]
    assert reasons[11] == [f"campaign: no campaign {theirs} of yours"]
    assert reasons[12] == ["impressions: expected a number, got 'lots' (line 12, column 5)"]
    assert reasons[13] == [
        "the period ends (2025-03-29T00:00:00+00:00) at or before it starts "
        "(2025-03-29T00:00:00+00:00)"
    ]
    landed = conn.execute(
        """SELECT v.label, r.result_period_start, r.result_period_end, r.spend_cents,
                  r.revenue_cents, r.actual_ctr::float8, r.recorded_by
           FROM prediction_campaign_results r
           JOIN prediction_campaign_variants v ON v.id = r.variant_id
           WHERE r.campaign_id = %s ORDER BY v.label, r.result_period_start""",
        (campaign,),
    ).fetchall()
    assert [
        (label, start.day, end.day, spend, revenue, ctr)
        for label, start, end, spend, revenue, ctr, _ in landed
    ] == [
        ("A", 1, 8, 2000, 9000, 0.03),
        ("B", 1, 8, 1800, 4550, pytest.approx(20 / 900, abs=5e-5)),
    ]
    assert {row[6] for row in landed} == {USER_ID}
    # Nothing of the stranger's campaign changed; every rejection is kept with its reasons.
    assert conn.execute(
        "SELECT count(*) FROM prediction_campaign_results WHERE campaign_id = %s", (theirs,)
    ).fetchone() == (0,)
    kept = conn.execute(
        "SELECT count(*) FROM predict_meta.campaign_result_submissions"
        " WHERE status = 'REJECTED' AND cardinality(reasons) > 0"
    ).fetchone()
    assert kept == (11,)
    audited = conn.execute(
        "SELECT actor_id, details->>'landed' FROM prediction_audit_log"
        " WHERE action = 'campaign.results_recorded' AND resource_id = %s",
        (campaign,),
    ).fetchall()
    assert sorted(audited) == [(USER_ID, "1"), (USER_ID, "1")]


def test_sending_a_file_again_adds_nothing_and_a_revision_replaces_its_period(conn):
    campaign, variants = make_campaign(conn, USER_ID, "Again", variants=("A", "B"))
    text = (
        HEADER
        + "Again,A,2025-03-01,2025-03-07,1000,30,3,45,20.00,90\n"
        + "Again,B,2025-03-01,2025-03-07,1000,20,2,35,20.00,60\n"
        + "Again,B,2025-03-01,2025-03-07,1000,20,2,35,20.00,60\n"  # the same row twice
        + "Again,Z,2025-03-01,2025-03-07,1000,20,2,35,20.00,60\n"  # rejected
    )
    assert _upload(conn, text).statuses == {"LANDED": 2, "REJECTED": 1}
    counts = _counts(conn)
    assert counts == (2, 3)
    again = _upload(conn, text)
    assert again.statuses == {"REJECTED": 1}  # the rejected row is checked again, and fails
    assert _counts(conn) == counts
    # Late conversions: the same period with other values revises the stored row.
    revised = _upload(conn, HEADER + "Again,A,2025-03-01,2025-03-07,1000,30,5,45,20.00,150\n")
    assert revised.statuses == {"REVISED": 1}
    row = conn.execute(
        "SELECT conversions, revenue_cents, actual_conversion_rate::float8"
        " FROM prediction_campaign_results WHERE variant_id = %s",
        (variants["A"],),
    ).fetchone()
    assert row == (5, 15000, pytest.approx(5 / 30, abs=5e-5))
    assert _counts(conn)[0] == 2


def test_json_rows_and_a_mapping_read_like_an_upload(conn):
    make_campaign(conn, USER_ID, "Mapped", variants=("Reel",))
    body = json.dumps(
        [
            {
                "Campaign name": "Mapped",
                "Ad name": "Reel",
                "Reporting starts": "2025-03-01",
                "Reporting ends": "2025-03-07",
                "Impressions": 2000,
                "Link clicks": 50,
                "Amount spent (cents)": 1999,
            }
        ]
    ).encode()
    mapping = {
        "columns": {
            "campaign": "Campaign name",
            "variant": "Ad name",
            "period_start": "Reporting starts",
            "period_end": "Reporting ends",
            "impressions": "Impressions",
            "clicks": "Link clicks",
            "spend": "Amount spent (cents)",
        },
        "money_unit": "cents",
    }
    [row] = read_results(body, "export.json", mapping)
    assert row.metrics["spend_cents"] == 1999 and row.faults == ()
    with pytest.raises(UploadError, match=r"line 1, column 2"):
        read_results(b"{not json", "export.json", mapping)
    with pytest.raises(ValueError, match=r"\$.money_unit"):
        read_results(body, "export.json", {"money_unit": "pennies"})


def test_the_push_path_lands_through_campaign_results_and_its_sensor(
    conn, db_url, dagster_instance
):
    campaign, _ = make_campaign(conn, USER_ID, "Pushed", variants=("A",))
    export = (
        b"Campaign name,Ad name,Reporting starts,Reporting ends,Impressions,Link clicks\n"
        b"Pushed,A,2025-03-01,2025-03-07,4000,80\n"
        b"Pushed,A,2025-03-08,2025-03-14,4000,9000\n"
    )
    mapping = {
        "columns": {
            "campaign": "Campaign name",
            "variant": "Ad name",
            "period_start": "Reporting starts",
            "period_end": "Reporting ends",
            "impressions": "Impressions",
            "clicks": "Link clicks",
        }
    }
    receipt = receive_push(
        conn, export, "push.csv", submitted_by=USER_ID, mapping_config=mapping, received_at=NOW
    )
    assert (receipt.rows, receipt.faulty_rows) == (2, 1)
    assert _counts(conn) == (0, 2)  # waiting for the asset, nothing landed yet
    resources = {"database": PostgresResource(url=db_url)}
    tick = campaign_results_sensor(
        dg.build_sensor_context(instance=dagster_instance, resources=resources)
    )
    [request] = tick.run_requests
    assert request.run_key == f"campaign-results:{max(receipt.submission_ids)}"
    # The same waiting rows on the next tick: no second run.
    again = campaign_results_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=tick.cursor, resources=resources)
    )
    assert again.skip_message == "2 pushed result rows waiting, none new"
    result = dg.materialize([campaign_results], instance=dagster_instance, resources=resources)
    assert result.success
    [materialization] = result.asset_materializations_for_node("campaign_results")
    assert materialization.metadata["landed"].value == 1
    assert materialization.metadata["rejected"].value == 1
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_rejected_results": False, "stored_results_consistent": True}
    assert conn.execute(
        "SELECT clicks, actual_ctr::float8 FROM prediction_campaign_results WHERE campaign_id = %s",
        (campaign,),
    ).fetchone() == (80, 0.02)
    # Nothing waits any more: the sensor skips.
    quiet = campaign_results_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=tick.cursor, resources=resources)
    )
    assert quiet.skip_message == "0 pushed result rows waiting, none new"


def test_the_cli_adds_one_row_or_refuses_it_whole_and_uploads_a_file(
    conn, db_url, tmp_path, capsys
):
    campaign, _ = make_campaign(conn, USER_ID, "From the shell", variants=("A",))
    email = "feeds@example.com"  # USER_ID's
    with cli_environment(db_url, str(tmp_path / "state")):
        argv = [
            "campaigns",
            "results",
            "add",
            "From the shell",
            "--variant",
            "A",
            "--start",
            "2025-03-01",
            "--end",
            "2025-03-07",
            "--impressions",
            "1000",
            "--clicks",
            "40",
            "--engagements",
            "55",
            "--user-email",
            email,
        ]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("landed: result ") and "ctr 0.0400" in out
        before = _counts(conn)
        # Overlapping the row just added: refused whole, in one line, nothing recorded.
        assert main([*argv[:6], "--start", "2025-03-03", *argv[8:]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "predict-pipeline: error: result refused: period: overlaps the stored result of "
            "2025-03-01T00:00Z .. 2025-03-08T00:00Z for this variant"
        ]
        assert _counts(conn) == before
        upload = tmp_path / "week.csv"
        upload.write_text(
            HEADER
            + "From the shell,A,2025-03-08,2025-03-14,1000,30,3,45,20.00,90\n"
            + "From the shell,A,2025-03-15,2025-03-21,1000,30,31,45,20.00,90\n"
        )
        assert main(["campaigns", "results", "upload", str(upload), "--user-email", email]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "rejected week.csv line 3: conversions (31) exceed clicks (30)",
            "week.csv: 2 rows: landed 1, revised 0, unchanged 0, rejected 1",
        ]
        assert main(["campaigns", "show", str(campaign), "--user-email", email]) == 0
        shown = capsys.readouterr().out
        assert "From the shell (tiktok, engagement): DRAFT" in shown
        assert shown.count("result A ") == 2
