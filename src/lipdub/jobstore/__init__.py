"""Job-store infrastructure shared by the web service (lipdub.server) and scale-out (lipdub.scale).

- ``store``: the SQLite record of jobs and avatars (``Store``), the only source of truth.
- ``runner``: the job interface (``JobContext``, ``JobFn``, ``JobQueue``) and running one job in
  its own process (``child_main``, ``terminate``, ``preload``), one queue per data dir.
- ``housekeeping``: free disk, retention (``--keep-days``) and the data folder's size cap.

Neither the server nor the workers reach into each other: both build on this package.
"""
