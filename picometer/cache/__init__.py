"""The exact-match response cache ([cache]): a repeated request without randomness is answered from disk.

Parts: `key` (pure: is a request cacheable, and the key of its answer), `store` (SQLite on disk, LRU within
max_mb, ttl_s, thread-safe, never raises on a storage failure).

How the gateway uses it (one call):
1. After admission knows the workflow (keys, headers, rules) and has passed pauses and block rules, and only
   when `cache.enabled` and the workflow is in `cache.workflows` (or that list is empty):
   `reason = key.cacheable(body, endpoint.shape, endpoint.name)`; a reason goes to the debug log.
2. `key.cache_key(provider, model, workflow, digest, endpoint.name, stream, body, headers=..., query=...)`
   with the body AS THE CLIENT SENT IT (admission rewrites it in place: max_tokens clamp, stream_options,
   tool-use limits; take the key before, or from a copy) and `digest` = sha256 hex of the key the client
   presented (its virtual key, or its own provider key when passed through; "" when none), so answers never
   cross workflows, keys or the stream flag.
3. `hit = await asyncio.to_thread(store.get, key, clock.now())`. A hit is answered with its status, content
   type and bytes as they are (an SSE stream replays as SSE), with no reservation and no upstream call; its
   record: cache_hit = true, cost_usd = 0, cost_saved_usd = hit.cost_usd.
4. A miss goes upstream as usual. Store only a 2xx answer from the provider and model asked for (not a
   fallback or downgrade) that reached the client whole (a complete stream, not cut off): the bytes the
   client received, after a hidden usage chunk was dropped. Stop collecting once past store.max_bytes // 4
   (put would refuse it). `await asyncio.to_thread(store.put, key, Entry(...), now)`. With
   [server].cost_in_body the bytes carry the original usage.cost: set it to 0 on replay.
   These are the request path's only SQLite calls, always on a worker thread, when the cache is on.
5. compose builds one `CacheStore.from_config(config)` (the file opens on first use) and lists it as
   Reloadable; the tick calls `store.prune(now)`; stop calls `store.close()`; `store.stats()` for status.

Choices: `n > 1` with a seed or temperature 0 is cached (n is in the key, and a seed promises the same set);
Responses' default `store` is cached (the replayed id names the answer the provider kept), an explicit
`store: true` is not. Two identical calls at once both go upstream (no single flight); the later put wins.
"""
