"""The Google Reader API (``/greader``): native reader apps (NetNewsWire, Reeder, Read You, Fluent
Reader, newsboat) read babelwire's stories, each once, in their key's locale.

Users are API keys (``main.py keys create --role reader --name alice --locale pt-PT``);
subscriptions are outlets (``feed/<n>``), labels are tickers, items are stories with the entry
``/v1/feed`` serves the key's locale (``api.feed``), the disclaimer closing their content; read and
starred flags are kept per key and story (``aggregator.readstate``). The wire rules — id forms,
continuation, tokens, what each client sends — follow ``../shared/research/greader.md``:

* ``ids``: item and stream ids in every form clients send;
* ``auth``: ClientLogin, the ``GoogleLogin auth=`` and write tokens, login rate limit;
* ``streams``: the SQL of a stream (ids, contents, counts) over the precomputed entries;
* ``render``: items as GReader JSON and as Atom (newsboat 2.21);
* ``routes``: the HTTP surface.
"""
