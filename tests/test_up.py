"""`make up` supervisor pieces that need no running Airflow: restart back-off and component logs."""

from aerodrome_airflow.up import BACKOFF_MAX_S, CRASH_LIMIT, HEALTHY_AFTER_S, Component, open_log


def test_backoff_doubles_while_crashing_and_resets_after_a_healthy_spell():
    component = Component("scheduler", ["airflow", "scheduler"], None)
    component.started_at = 0.0
    delays = []
    for crash in range(CRASH_LIMIT):
        now = 1.0 + crash
        delays.append(component.backoff(now))
        component.started_at = now
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0][:CRASH_LIMIT]
    assert component.crash_looping()
    component.started_at = 100.0
    assert component.backoff(100.0 + HEALTHY_AFTER_S) == 1.0 and not component.crash_looping()
    assert max(component.backoff(t) for t in range(200, 230)) <= BACKOFF_MAX_S


def test_component_logs_are_appended_and_rotated(tmp_path):
    path = tmp_path / "up" / "scheduler.log"
    with open_log(path) as log:
        log.write(b"first start\n")
    with open_log(path) as log:
        log.write(b"after a crash\n")
    assert path.read_text() == "first start\nafter a crash\n"  # a restart never truncates
    with open_log(path, rotate_bytes=10) as log:
        log.write(b"fresh\n")
    assert path.read_text() == "fresh\n"
    assert path.with_name("scheduler.log.1").read_text() == "first start\nafter a crash\n"
