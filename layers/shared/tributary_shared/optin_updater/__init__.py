"""The opt-in updater pipeline (functions/optin_updater): DMS change records → the SMS opt-out list.

- `updater`: the function: one Kinesis batch, in order, guarded per phone number by `versions`;
- `settings`: what the function reads from its environment, once, at cold start;
- `dms_records`: DMS's JSON records read as opt-in changes;
- `opt_out_list`: the End User Messaging SMS opt-out list, with retries.
"""
