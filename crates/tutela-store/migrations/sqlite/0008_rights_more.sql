-- Rights engine, second part (issue 6).

-- Tamper-evident request history: each line carries SHA-256 over the previous line's hash and
-- its own fields (request, sequence, time, event, state, actor), so a changed, removed or
-- inserted line breaks the chain of its request. Lines written before this migration have none.
ALTER TABLE rights_request_history ADD COLUMN hash TEXT;

-- Analytics visitors who objected (art. 21) or withdrew consent through a rights request: the
-- collector records none of their hits any more, whatever their browser says. The key is an
-- HMAC of the tracker's visitor id under a random per-site salt (`analytics_salts`, kind
-- `optout`, never rotated): it is not the cookie value and matches no stored event.
CREATE TABLE analytics_optouts (
    site_id     BIGINT  NOT NULL,
    visitor_key BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (site_id, visitor_key)
) WITHOUT ROWID;
