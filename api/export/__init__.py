"""The re-export: the localized feed as RSS 2.0, Atom 1.0 and JSON Feed 1.1, and an OPML list of them.

``routes`` validates a request exactly as ``/v1/feed`` does and reads the page through
``api.feed.FeedReader``, so the re-export serves the same stories, in the same order, with the
same cursor; ``document`` turns that page into one format-neutral ``FeedDocument`` (absolute
links, stable entry ids, the disclaimer appended to the content) and ``rss``, ``atom``,
``jsonfeed`` and ``opml`` each write one format by hand from it. Every string written goes
through ``aggregator.parse.clean_text`` and is escaped, so any stored text gives well-formed output.
"""
