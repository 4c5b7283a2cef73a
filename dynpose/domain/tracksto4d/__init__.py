"""TracksTo4D: camera poses, a low-rank dynamic cloud and motion levels from 2-D tracks, learned here."""
