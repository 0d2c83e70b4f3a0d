"""Development only: everything a checkout needs and the production image never ships.

The launcher behind `make run` (`launcher`), the scripted demo (`demo`), the dev
certificate authority (`pki`), the test stack and pytest plugin (`testing`), the
`make gen` tool (`tools`) and the `dmp dev|demo|pki` commands (`cli`). It may import
every other package; nothing else imports it (dmp_cli mounts `cli` by name when present).
"""
