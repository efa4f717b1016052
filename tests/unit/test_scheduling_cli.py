"""`registrar schedules …` against the real API app (in-memory store, fake scheduler and runner) over HTTP."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from registrar_cli.main import cli
from test_scheduling import Env
from werkzeug.serving import make_server


@pytest.fixture
def served(tmp_path, monkeypatch):
    env = Env()
    server = make_server("127.0.0.1", 0, env.client.application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REGISTRAR_API_URL", f"http://127.0.0.1:{server.server_port}")
    yield env
    server.shutdown()


def run(*args: str):
    return CliRunner().invoke(cli, ["schedules", *args])


def test_create_list_show_edit_pause_resume_trigger_delete(served, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "retrieval", "epochs": 4}))
    created = run("create", "--config", str(config), "--model", "recs", "--type", "weekly", "--at", "09:00",
                  "--day-of-week", "mon", "--timezone", "Europe/Warsaw", "--json")
    assert created.exit_code == 0, created.output
    schedule = json.loads(created.output)
    sid = schedule["schedule_id"]
    assert schedule["cron"] == "0 9 * * 1" and schedule["name"] == "recs retraining"
    listed = run("list")
    assert listed.exit_code == 0 and "recs" in listed.output and "0 9 * * 1" in listed.output
    assert [s["schedule_id"] for s in json.loads(run("list", "--json").output)["schedules"]] == [sid]
    assert "Europe/Warsaw" in run("show", sid).output
    edited = run("edit", sid, "--at", "07:30", "--json")
    assert edited.exit_code == 0 and json.loads(edited.output)["cron"] == "30 7 * * 1"
    assert "is paused" in run("pause", sid).output
    assert "is active" in run("resume", sid).output
    triggered = run("trigger", sid)
    assert triggered.exit_code == 0 and "training run sched-" in triggered.output
    calendar = run("calendar", "--weeks-past", "1", "--weeks-future", "2")
    assert calendar.exit_code == 0 and "Mon" in calendar.output and "projected" in calendar.output
    again = run("create", "--config", str(config), "--model", "recs", "--type", "daily", "--at", "01:00")
    assert again.exit_code == 1 and sid in again.output  # 409 names the existing schedule
    deleted = run("delete", sid, "--yes")
    assert deleted.exit_code == 0 and "deleted schedule" in deleted.output and served.scheduler.jobs == {}


@pytest.mark.parametrize(("args", "message"), [
    (("create", "--type", "daily"), "exactly one of --from-run"),
    (("create", "--from-run", "run-1"), "--type is required"),
    (("create", "--from-run", "run-1", "--type", "weekly", "--day-of-week", "someday"), "mon … sun"),
    (("create", "--from-run", "run-1", "--type", "hourly", "--minute", "20"), "20"),
    (("edit", "sch-00000000000000000000"), "nothing to change"),
    (("calendar", "--weeks-past", "200"), "200"),
])
def test_usage_errors(served, args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output


def test_api_errors_name_the_field(served):
    result = run("create", "--from-run", "run-1", "--model", "recs", "--type", "daily", "--at", "25:00")
    assert result.exit_code == 1 and "schedule_time" in result.output
    result = run("show", "sch-00000000000000000000")
    assert result.exit_code == 1 and "does not exist" in result.output


def test_a_schedule_made_from_a_run_is_named_after_the_run_s_model(served):
    served.store.set("training_runs/run-7", {"training_run_id": "run-7", "model_name": "rank", "model_type": "ranking",
                                             "status": "SUCCEEDED", "training_config": {"model_type": "ranking"}})
    created = run("create", "--from-run", "run-7", "--type", "daily", "--at", "06:00", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["name"] == "rank retraining"
