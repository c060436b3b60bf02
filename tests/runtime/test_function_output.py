"""What functions print reaches the function log as whole lines, each labelled with time and logical id."""

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary.runtime import function_output
from tributary.runtime.log_format import LogLine, labelled_line, parse_log_line


@pytest.fixture
def function_log():
    log = io.StringIO()
    function_output.route_function_output(log)
    function_output.label_functions({"tributary-writer": "WriterFunction", "tributary-reader": "ReaderFunction"})
    try:
        yield log
    finally:
        function_output.route_function_output(None)


def written_as(function_name: str, parts: list[str]) -> None:
    """`parts` written one call each by `function_name`'s code on this thread."""
    stream = function_output._ThreadRoutedStream(passthrough=io.StringIO())
    with function_output.function_thread(function_name):
        for part in parts:
            stream.write(part)


def logged(log: io.StringIO) -> list[tuple[str | None, str]]:
    return [(line.function, line.text) for line in map(parse_log_line, log.getvalue().split("\n")[:-1])]


def test_each_line_carries_the_time_and_the_functions_logical_id(function_log):
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    written_as("tributary-writer", ['{"level":"INFO","message":"hi"}', "\n", "Traceback (most recent call last):\n"])
    lines = [parse_log_line(line) for line in function_log.getvalue().splitlines()]
    assert [(line.function, line.text) for line in lines] == [
        ("WriterFunction", '{"level":"INFO","message":"hi"}'),
        ("WriterFunction", "Traceback (most recent call last):"),
    ]
    assert all(before <= line.time <= datetime.now(UTC) for line in lines)
    assert function_log.getvalue().startswith("WriterFunction 20")


def test_a_function_the_runtime_did_not_name_is_labelled_by_its_name(function_log):
    written_as("other-function", ["x\n"])
    assert logged(function_log) == [("other-function", "x")]


def test_a_partial_line_waits_for_its_end_and_is_written_when_the_function_stops(function_log):
    written_as("tributary-writer", ["no newline ", "yet", "\nlast words"])
    assert logged(function_log) == [("WriterFunction", "no newline yet"), ("WriterFunction", "last words")]


def test_threads_writing_at_once_do_not_split_each_others_lines(function_log):
    barrier = threading.Barrier(2)

    def write(name: str, word: str) -> None:
        stream = function_output._ThreadRoutedStream(passthrough=io.StringIO())
        with function_output.function_thread(name):
            for _ in range(200):
                barrier.wait()  # both threads mid-line at once
                stream.write(word)
                stream.write(word + "\n")

    threads = [threading.Thread(target=write, args=(name, word))
               for name, word in (("tributary-writer", "w"), ("tributary-reader", "r"))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = logged(function_log)
    assert sorted(set(lines)) == [("ReaderFunction", "rr"), ("WriterFunction", "ww")]
    assert len(lines) == 400


def test_threads_a_function_starts_write_as_that_function(function_log, capsys):
    def started_by_the_function() -> None:
        print("from the function's own thread")

    with function_output.stdout_routed(), function_output.function_thread("tributary-writer"):
        thread = threading.Thread(target=started_by_the_function)
        thread.start()
        thread.join()
    with function_output.stdout_routed():
        print("the runtime's own line")
    assert logged(function_log) == [("WriterFunction", "from the function's own thread")]
    assert capsys.readouterr().out == "the runtime's own line\n"


def test_raw_mode_writes_lines_exactly_as_printed():
    log = io.StringIO()
    function_output.route_function_output(log, labelled=False)
    try:
        written_as("tributary-writer", ["a", "b\nc\n\n", "end"])
    finally:
        function_output.route_function_output(None)
    assert log.getvalue() == "ab\nc\n\nend\n"


# Any text at all, in any pieces: "\r", form feeds, U+2028, a lone space, empty writes.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=60) | st.sampled_from(["", "\n", " ", "\r\n", "\u2028"])


@given(parts=st.lists(_TEXT, max_size=8))
def test_the_log_holds_every_line_written_whatever_the_text_and_its_pieces(parts):
    log = io.StringIO()
    function_output.route_function_output(log)
    try:
        written_as("tributary-writer", parts)
    finally:
        function_output.route_function_output(None)
    written = "".join(parts)
    expected = written.split("\n")
    if expected[-1] == "":
        expected.pop()  # the text after the last newline, when there is any, is a line of its own
    lines = [parse_log_line(line) for line in log.getvalue().split("\n")[:-1]]
    assert [line.text for line in lines] == expected
    assert {line.function for line in lines} <= {"tributary-writer"}


@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\n")))
def test_a_labelled_line_reads_back_as_written(text):
    when = time.time()
    line = parse_log_line(labelled_line("StreamProcessorFunction", when, text))
    assert (line.function, line.text) == ("StreamProcessorFunction", text)
    assert abs(line.time.timestamp() - when) < 0.001


def test_a_line_without_a_label_reads_back_as_it_is():
    assert parse_log_line("Traceback (most recent call last):\n") == LogLine("Traceback (most recent call last):")
    assert parse_log_line("WriterFunction yesterday text") == LogLine("WriterFunction yesterday text")


def test_output_of_other_threads_is_not_touched(function_log):
    passthrough = io.StringIO()
    function_output._ThreadRoutedStream(passthrough).write("runtime line\n")
    assert passthrough.getvalue() == "runtime line\n"
    assert function_log.getvalue() == ""
