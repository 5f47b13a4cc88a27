"""Helpers of the guarantees-under-failure tests (tests/test_faults_*.py); no tests here.

    session.py   the input: a seeded synthetic session in files, merged by event time, a Feeder
    kafka_io.py  topics under a run's own prefix, reading and tailing them, committed offsets
    job.py       `runner run` as a restartable process group (crash, restore, checkpoints)
    oracle.py    what the job must produce: the cached batch replay, the Python oracle
Rows are compared by tests/golden/compare.py (the one comparator and its tolerance). Waits
for results poll with a deadline; the only timed waits are fault parameters (how long a
broker stays down, how long the input pauses).
"""
