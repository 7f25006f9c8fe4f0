//! The Lua scripts of the Redis backend.
//!
//! On a cluster, each is invoked with the keys of one slot only: an entry,
//! its guard and its lock (TOKENS and LOCK then without tags), or one tag's
//! token (TAG_TOKEN).

use std::sync::LazyLock;

use redis::Script;

/// Releases the lock at `key` if `held` (its value as read) is the owner's
/// `token`, and tells its waiters when it has any: a waiter marks the lock
/// it waits for (see [`LOCK`]), so that a release nobody waits for costs no
/// `PUBLISH` (which is also sent on to replicas and the AOF). Shared by
/// GUARDED_SET, RENEW and UNLOCK.
const RELEASE: &str = r"
    local function release(key, held, token, message)
        if held == token then
            redis.call('DEL', key)
            return true
        end
        if held == token .. '+' then
            redis.call('DEL', key)
            -- pcall: a user without the right to publish (Redis 7 ACLs
            -- allow no channel by default) still releases; waiters poll.
            redis.pcall('PUBLISH', key, message)
            return true
        end
        return false
    end";

/// KEYS: entry, guard, and the lock to release, if any. ARGV: bytes, ttl in
/// ms, the expected guard, and the lock's token. A missing guard (read as
/// false) never equals it. The lock is released whether or not the entry
/// was written.
pub(super) static GUARDED_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RELEASE}
        local stored = 0
        -- The guard and the lock (if any) in one read.
        local read = redis.call('MGET', unpack(KEYS, 2))
        if read[1] == ARGV[3] then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            stored = 1
        end
        if KEYS[3] then release(KEYS[3], read[2], ARGV[4], stored) end
        return stored"
    ))
});

/// Puts the tokens at KEYS[first..], as one `MGET` read them into `read`
/// from `at` on, into `out` from `out_at` on, giving each missing one (or
/// one that is not a number, which no reader could match anyway) the fresh
/// token at ARGV[i + 1]; the first, the guard, lives for ARGV[window] ms,
/// the tags' at least the last ARGV's ms from now (see [`KEEP_TAG`]).
/// Shared by TOKENS and LOCK.
const READ_TOKENS: &str = r"
    local function read_tokens(first, window, read, at, out, out_at)
        local keep = tonumber(ARGV[#ARGV])
        -- A tag given twice was read once, before either was made.
        local made = {}
        for i = first, #KEYS do
            local token = read[at + i - first]
            if made[KEYS[i]] then
                token = made[KEYS[i]]
            elseif not token or not tonumber(token) then
                token = ARGV[i + 1]
                made[KEYS[i]] = token
                if i == first then
                    redis.call('SET', KEYS[i], token, 'PX', ARGV[window])
                else
                    redis.call('SET', KEYS[i], token, 'PX', 2 * keep)
                end
            elseif i > first then
                keep_tag(KEYS[i], keep)
            end
            out[out_at + i - first] = token
        end
        return out
    end";

/// Keeps the tag token at `key` at least `keep` ms from now: when it has
/// less left (or no TTL, as tokens had before they expired), it is given
/// twice that. Not at every load: changing a key's TTL is a change that
/// client tracking pushes, which would empty every process's in-process
/// tier of the tag's entries; doubling makes it once per `keep` at most.
const KEEP_TAG: &str = r"
    local function keep_tag(key, keep)
        if redis.call('PTTL', key) < keep then
            redis.call('PEXPIRE', key, 2 * keep)
        end
    end";

/// KEYS: the guard, then the tag tokens. ARGV: the guard's lifetime in ms,
/// a fresh token for each key, then how long tag tokens live at least, in ms.
pub(super) static TOKENS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{KEEP_TAG}\n{READ_TOKENS}\n return read_tokens(1, 1, redis.call('MGET', unpack(KEYS)), 1, {{}}, 1)"
    ))
});

/// KEYS: a tag's token. ARGV: a fresh token, and how long the token lives
/// at least, in ms. Returns the token, giving the tag the fresh one if it
/// has none (or one that is not a number), and extends its life as
/// READ_TOKENS does.
pub(super) static TAG_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{KEEP_TAG}
        local keep = tonumber(ARGV[2])
        local token = redis.call('GET', KEYS[1])
        if not token or not tonumber(token) then
            token = ARGV[1]
            redis.call('SET', KEYS[1], token, 'PX', 2 * keep)
        else
            keep_tag(KEYS[1], keep)
        end
        return token"
    ))
});

/// KEYS: the lock, the entry, the guard, then the tag tokens. ARGV: the
/// lock's token, its TTL in ms, the guard's lifetime in ms, a fresh token
/// for the guard and each tag, then how long tag tokens live at least, in
/// ms. Returns nil if the lock is held (and marks it waited for, with a `+`
/// after the holder's token, so that its release is published), else the
/// entry (nil if absent), the guard and the tag tokens.
pub(super) static LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{KEEP_TAG}
        {READ_TOKENS}
        if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
            -- Held: mark it waited for, so that its release is published.
            local held = redis.call('GET', KEYS[1])
            if held and string.sub(held, -1) ~= '+' then
                local left = redis.call('PTTL', KEYS[1])
                if left > 0 then redis.call('SET', KEYS[1], held .. '+', 'PX', left) end
            end
            return false
        end
        -- The entry, the guard and the tags in one read (another type at
        -- the entry's key reads as no entry, as in a fetch).
        local read = redis.call('MGET', unpack(KEYS, 2))
        return read_tokens(3, 3, read, 2, {{read[1]}}, 2)"
    ))
});

/// KEYS: entry, and the lock to release, if any. ARGV: the entry's times as
/// read and as renewed (see [`Renewal`](crate::backend::Renewal)), the TTL in ms, and the lock's
/// token. The entry is rewritten only if its times are still those read.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    let times = crate::entry::TIMES;
    let (first, last) = (times.start + 1, times.end);
    Script::new(&format!(
        r"{RELEASE}
        local renewed = 0
        -- The entry (nil if of another type) and the lock (if any) in one read.
        local read = redis.call('MGET', unpack(KEYS))
        local entry = read[1]
        if type(entry) == 'string' and string.sub(entry, {first}, {last}) == ARGV[1] then
            local bytes = string.sub(entry, 1, {first} - 1) .. ARGV[2] .. string.sub(entry, {last} + 1)
            redis.call('SET', KEYS[1], bytes, 'PX', ARGV[3])
            renewed = 1
        end
        if KEYS[2] then release(KEYS[2], read[2], ARGV[4], renewed) end
        return renewed"
    ))
});

/// KEYS: the lock. ARGV: the owner's token. Compare-and-delete, and word
/// to the waiters (see [`Releases`](super::releases::Releases)).
pub(super) static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{RELEASE}
        if release(KEYS[1], redis.call('GET', KEYS[1]), ARGV[1], 0) then return 1 end
        return 0"
    ))
});

/// A call of a script as one `EVALSHA` command built in place, its buffers
/// sized once (`ScriptInvocation` copies each key and argument into a
/// buffer of its own, then all of them into the command: about a dozen
/// allocations per call). Keys first, then arguments.
pub(super) struct Eval {
    pub(super) script: &'static Script,
    pub(super) cmd: redis::Cmd,
}

impl Eval {
    /// `script` with `keys` keys and `args` arguments, of about `bytes`
    /// bytes in all (numbers count as 20).
    pub(super) fn new(script: &'static Script, keys: usize, args: usize, bytes: usize) -> Self {
        let hash = script.get_hash();
        let mut cmd = redis::Cmd::with_capacity(3 + keys + args, "EVALSHA".len() + hash.len() + 4 + bytes);
        cmd.arg("EVALSHA").arg(hash).arg(keys);
        Eval { script, cmd }
    }

    /// Adds the next key or argument.
    pub(super) fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }
}
