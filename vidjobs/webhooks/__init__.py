"""Signed completion webhooks (Standard Webhooks): the target guard, the secrets, the dispatcher.

The outbox is Postgres (migration 0016, ``db/webhooks.py``): a trigger writes a delivery row in
the transaction of each job's terminal state change. This package sends them: the API checks a
submit's ``callback_url`` with :mod:`vidjobs.webhooks.targets`; each worker process (or
``vidjobs webhooks dispatch``) runs a :class:`~vidjobs.webhooks.dispatcher.Dispatcher`. It
imports ``schema``, ``db`` and ``settings`` of ours; the API, the worker and the CLI import it.
"""
