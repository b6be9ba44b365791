"""Tests of the Stash plugin side: the hook, its AMQP publisher and spool, and the installer."""
