"""`m2l.evaluate.items`: which files an evaluation reads from a folder."""

import os
import sys

import pytest
import soundfile as sf
from m2l_testing import sine

from m2l.evaluate.items import find_items


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX")
def test_a_named_pipe_or_loop_in_the_folder_is_skipped_with_a_warning_not_read(tmp_path):
    sf.write(tmp_path / "b.wav", sine(440.0, 0.2), 44100)
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "a.wav", sine(330.0, 0.2), 44100)
    os.mkfifo(tmp_path / "pipe.wav")  # reading it would block forever
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"pipe.wav: is a named pipe \(FIFO\), not a regular file; skipped"):
        items = find_items(tmp_path)
    assert [item.name for item in items] == ["b.wav", "sub/a.wav"]
