"""Retraining schedules: one schedule per model name, one Cloud Scheduler job per schedule, one training run per
slot — commands, validation, handlers, the tick decoder, the job and submission follow-ups, statistics and the
calendar.

Documents (all written through the message bus, in one transaction with the ledger, history and outbox):
- `schedules/{schedule_id}`: timing, frozen training config, status, statistics, scheduler job state;
- `schedule_names/{model_name}`: the name claim that makes "one schedule per model name" transactional;
- `run_numbers/{model_name}`: the last run number handed out for a model name;
- `schedules/{schedule_id}/history/{entry_id}`: every change and ignored tick (kept after a delete).

Side effects outside Firestore happen after the commit and are idempotent: the Cloud Scheduler job id is
`jobs.job_id_for(schedule_id)`, the pipeline job id is the training run id (`timing.training_run_id`, one per
slot). Their outcome is written back on the documents (`scheduler_job`, the run's `submission`).
"""
