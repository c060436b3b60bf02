"""The local runtime, as an engine: a SAM template's pipelines run on one machine against moto.

Commands (tributary.commands) and demos (tributary.demos) drive it from above; nothing here imports them.

    app.py           Runtime: start the emulator, deploy, load functions, create mappings, step, drain
    template/        the SAM template: YAML, parameters, conditions, intrinsics, names and ARNs
    resources.py     create what the template declares in the emulator (moto)
    functions.py     run each function in this process the way Lambda would
    invocation_slot.py  one invocation at a time; a function's synchronous call runs nested in it
    function_output.py  what functions print goes to the function log
    log_format.py        the function log's line format; Powertools records and EMF metrics read back
    invocation.py    InvocationResult: what an invocation returned, for every caller of a function
    executions.py    Step Functions executions: start one, wait for its end
    esm/             event source mappings (Kinesis, DynamoDB streams), one concept per module
    destinations.py  on-failure destinations and AWS's invocation record
    emulations/      EMULATIONS of the services and features moto lacks (Lambda, SMS, Firehose, ...)
    faults.py        --faults: AWS misbehaving towards the functions, injected and traced
    trace.py         --trace: one JSON line per invocation, delivery and fault
    lake.py          the emulated data lake as DuckDB tables (`tributary query`, the demo)
"""
