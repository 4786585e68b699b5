-- Failed logins, shared by every replica so that an attacker spread over
-- them gets no more attempts than against one (auth::throttle). Keys are
-- "account:<name>" and "address:<ip>". A row is removed on the account's
-- next successful login, or pruned an hour after its last failure.
CREATE TABLE login_failures (
    key            TEXT PRIMARY KEY,
    failures       BIGINT NOT NULL,
    -- Unix milliseconds; no attempt is checked before this.
    blocked_until  BIGINT NOT NULL,
    last_at        BIGINT NOT NULL
);
