//! Reading a whole collection by index paging (RFC 7644 §3.4.2.4), several pages in flight.
//!
//! The first page says how many resources there are (`totalResults`) and how many a page holds
//! (a server may cap `count`: then the next page starts after what came back). The other pages'
//! `startIndex`es follow from these two, so they are asked for `concurrency` at a time and read
//! in order as they come back. Without I/O: the caller gives the request of one page.
//!
//! A collection can change while it is read. Index pages then shift: a deletion before a page
//! makes it skip one resource, a creation makes it repeat one. What this module guarantees:
//! - a resource listed twice is handed over once (the first time);
//! - a page shorter than its place in the collection promised (a server that gives fewer than it
//!   said, or a shift) is followed by a request for the rest, one page at a time;
//! - a collection that grew while read is read on to its new end;
//! - the listing is `complete` only if every page counted the same `totalResults` and that many
//!   distinct resources were handed over. A listing that saw the count change is not complete,
//!   and an incomplete listing proves no absence (the planner creates nothing again from it).
//!
//! A server that ignores `startIndex` (it answers every page with the same first resources) is
//! a protocol error, never a silently short listing; one that ignores `count` and answers with
//! everything at once costs one request.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use super::protocol::Listing;
use super::scim::TenantError;

/// One page as the server answered it: its body, read resource by resource when the page's
/// turn comes ([`super::protocol::read_list_page`]): the pages waiting their turn hold text, not
/// JSON values.
#[derive(Debug, Default)]
pub struct Page {
    body: Vec<u8>,
}

impl Page {
    pub fn new(body: Vec<u8>) -> Page {
        Page { body }
    }

    /// A ListResponse holding `resources` and `totalResults` (when given).
    #[cfg(test)]
    pub fn of(resources: Vec<Value>, total: Option<u64>) -> Page {
        let mut page = serde_json::json!({"Resources": resources});
        if let Some(total) = total {
            page["totalResults"] = total.into();
        }
        Page::new(page.to_string().into_bytes())
    }
}

/// Asks for the page at a 1-based `startIndex`, of `count` resources.
pub type FetchPage<'f> = dyn FnMut(u64, u32) -> BoxFuture<'f, Result<Page, TenantError>> + Send + 'f;

/// The ids handed over, each as two independent 64-bit hashes: a million ids take 16 MB where
/// their text took 70, and two different ids look alike with a chance of about 2^-128 a pair.
#[derive(Default)]
struct Seen {
    keys: (RandomState, RandomState),
    hashes: HashSet<u128>,
}

impl Seen {
    /// Whether `id` was not seen before.
    fn insert(&mut self, id: &str) -> bool {
        let hash = u128::from(self.keys.0.hash_one(id)) << 64 | u128::from(self.keys.1.hash_one(id));
        self.hashes.insert(hash)
    }
}

/// What the pages handed over so far.
struct Reader<'e> {
    what: &'e str,
    each: &'e mut (dyn FnMut(Value) + Send),
    seen: Seen,
    listed: u64,
    pages: u64,
    /// `totalResults` of the first page.
    total: u64,
    /// The largest `totalResults` any page gave (a collection that grew is read on to it).
    largest: u64,
    /// Some page counted another `totalResults` than the first.
    shifted: bool,
}

impl Reader<'_> {
    /// Hands over the resources not listed before; how many those were.
    fn take(&mut self, page: Page, start: u64) -> Result<u64, TenantError> {
        self.pages += 1;
        let mut new = 0;
        let (seen, each) = (&mut self.seen, &mut self.each);
        let (total, returned) = super::protocol::read_list_page(&page.body, &mut |r| {
            // A resource that moved between pages (a concurrent change) is listed once.
            let again = r.get("id").and_then(Value::as_str).is_some_and(|id| !seen.insert(id));
            if !again {
                each(r);
                new += 1;
            }
        })?;
        let total = total.ok_or_else(|| TenantError::Protocol("a ListResponse without \"totalResults\"".into()))?;
        if self.pages == 1 {
            self.total = total;
        } else if total != self.total {
            self.shifted = true;
        }
        self.largest = self.largest.max(total);
        self.listed += new;
        // A page inside the collection that brings nothing new: a server that ignores
        // `startIndex` (or gives up early) would otherwise look like a short collection.
        if start <= total && (returned == 0 || new == 0) {
            return Err(TenantError::Protocol(format!(
                "{} page at startIndex {start} brought nothing new but totalResults is {total}",
                self.what
            )));
        }
        Ok(returned)
    }
}

/// Every resource of a collection, each handed to `each` in collection order as its page is
/// read (see the module for what a changing collection does). `count` is what a page asks for,
/// `concurrency` how many pages may be in flight (1: one after the other).
pub async fn read_pages(
    what: &str,
    count: u32,
    concurrency: usize,
    fetch: &mut FetchPage<'_>,
    each: &mut (dyn FnMut(Value) + Send),
) -> Result<Listing, TenantError> {
    let count = count.max(1);
    let mut reader =
        Reader { what, each, seen: Seen::default(), listed: 0, pages: 0, total: 0, largest: 0, shifted: false };
    let first = fetch(1, count).await?;
    let step = reader.take(first, 1)?;
    // The page size the server gives: `count`, or less when it caps it.
    let mut next = 1 + step;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    if next <= reader.total {
        let starts: Vec<u64> = (next..=reader.total).step_by(step as usize).collect();
        let last = reader.total;
        let mut pages = stream::iter(starts.into_iter().map(|s| {
            let page = fetch(s, count);
            async move { (s, page.await) }
        }))
        .buffered(concurrency.max(1));
        while let Some((start, page)) = pages.next().await {
            let returned = reader.take(page?, start)?;
            // Where this page should have ended, by the first page's count.
            let end = (start + step - 1).min(last);
            if start + returned <= end {
                gaps.push((start + returned, end));
            }
            next = next.max(start + returned);
        }
    }
    // What short pages left out, then what the collection grew by: one page after the other.
    gaps.push((next, u64::MAX));
    for (from, to) in gaps {
        let mut start = from;
        while start <= to.min(reader.largest) {
            let returned = reader.take(fetch(start, count).await?, start)?;
            if returned == 0 {
                break; // past the end of a collection that shrank
            }
            start += returned;
        }
    }
    let complete = !reader.shifted && reader.listed >= reader.total;
    Ok(Listing { resources: Vec::new(), pages: reader.pages, total: reader.total, complete })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// A change to the collection between two requests.
    type Change = Box<dyn FnMut(&mut Vec<String>) + Send>;

    /// An in-memory collection served by index, with the server's quirks.
    #[derive(Default)]
    struct Collection {
        ids: Vec<String>,
        /// The server gives at most this many a page (0: what was asked).
        cap: usize,
        /// Before answering request number k (1-based), change the collection.
        change: Vec<(usize, Change)>,
        /// The server ignores `startIndex`.
        ignores_start: bool,
        /// Answers with fewer than asked (but not at the end) on these request numbers.
        short: Vec<usize>,
        requests: Vec<(u64, u32)>,
    }

    impl Collection {
        fn of(n: usize) -> Collection {
            Collection { ids: (1..=n).map(|i| format!("r{i:03}")).collect(), ..Collection::default() }
        }

        fn page(&mut self, start: u64, count: u32) -> Page {
            self.requests.push((start, count));
            let k = self.requests.len();
            for (at, change) in &mut self.change {
                if *at == k {
                    change(&mut self.ids);
                }
            }
            let mut take = count as usize;
            if self.cap > 0 {
                take = take.min(self.cap);
            }
            if self.short.contains(&k) {
                take = take.div_ceil(2);
            }
            let from = if self.ignores_start { 0 } else { (start as usize - 1).min(self.ids.len()) };
            let resources = self.ids[from..].iter().take(take).map(|id| json!({"id": id})).collect();
            Page::of(resources, Some(self.ids.len() as u64))
        }
    }

    fn list(c: Collection, count: u32, concurrency: usize) -> (Result<Listing, TenantError>, Vec<String>, Collection) {
        let (listing, got, c, _) = list_counting(c, count, concurrency);
        (listing, got, c)
    }

    /// Also the most requests that were in flight at once.
    fn list_counting(
        c: Collection,
        count: u32,
        concurrency: usize,
    ) -> (Result<Listing, TenantError>, Vec<String>, Collection, usize) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let shared = Arc::new(Mutex::new(c));
        let server = shared.clone();
        let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (flying, peak) = (in_flight.clone(), most.clone());
        let mut fetch = move |start: u64, count: u32| -> BoxFuture<'static, Result<Page, TenantError>> {
            let page = server.lock().unwrap().page(start, count);
            let (flying, peak) = (flying.clone(), peak.clone());
            Box::pin(async move {
                let now = flying.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // The answer takes a while: the other requests in flight are sent meanwhile.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                flying.fetch_sub(1, Ordering::SeqCst);
                Ok(page)
            })
        };
        let mut got = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let listing = runtime.block_on(read_pages("Users", count, concurrency, &mut fetch, &mut |r| {
            got.push(r["id"].as_str().unwrap().to_owned())
        }));
        drop(fetch);
        let c = Arc::into_inner(shared).unwrap().into_inner().unwrap();
        (listing, got, c, most.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn ids(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
        range.map(|i| format!("r{i:03}")).collect()
    }

    #[test]
    fn pages_after_the_first_are_asked_for_at_once_and_read_in_order() {
        let (listing, got, c) = list(Collection::of(25), 10, 4);
        let listing = listing.unwrap();
        assert_eq!(got, ids(1..=25));
        assert!(listing.complete);
        assert_eq!((listing.pages, listing.total), (3, 25));
        assert_eq!(c.requests, [(1, 10), (11, 10), (21, 10)]);
    }

    #[test]
    fn up_to_concurrency_pages_are_in_flight() {
        for (concurrency, most) in [(1, 1), (2, 2), (4, 4)] {
            let (listing, got, c, peak) = list_counting(Collection::of(100), 10, concurrency);
            assert!(listing.unwrap().complete);
            assert_eq!((got, c.requests.len()), (ids(1..=100), 10));
            assert_eq!(peak, most, "concurrency {concurrency}");
        }
    }

    #[test]
    fn a_server_that_caps_count_is_paged_by_what_it_gives() {
        let mut c = Collection::of(23);
        c.cap = 5;
        let (listing, got, c) = list(c, 10, 3);
        assert_eq!(got, ids(1..=23));
        assert!(listing.unwrap().complete);
        let starts: Vec<u64> = c.requests.iter().map(|(s, _)| *s).collect();
        assert_eq!(starts, [1, 6, 11, 16, 21]);
    }

    #[test]
    fn a_server_that_ignores_count_costs_one_request() {
        let mut c = Collection::of(30);
        c.cap = 1000;
        let (listing, got, c) = list(c, 1000, 4);
        assert_eq!((got.len(), c.requests.len()), (30, 1));
        assert!(listing.unwrap().complete);
    }

    #[test]
    fn a_short_page_is_followed_by_a_request_for_the_rest() {
        let mut c = Collection::of(40);
        c.short = vec![2]; // the page at 11 gives 5 of 10
        let (listing, got, c) = list(c, 10, 4);
        assert_eq!(got.len(), 40);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, ids(1..=40));
        assert!(listing.unwrap().complete);
        assert!(c.requests.contains(&(16, 10)), "the rest of the short page: {:?}", c.requests);
    }

    #[test]
    fn a_server_that_ignores_start_index_is_an_error_not_a_short_listing() {
        for concurrency in [1, 4] {
            let mut c = Collection::of(30);
            c.ignores_start = true;
            let (listing, ..) = list(c, 10, concurrency);
            assert!(matches!(listing, Err(TenantError::Protocol(_))), "{listing:?}");
        }
    }

    #[test]
    fn an_empty_page_inside_the_count_is_an_error() {
        let mut c = Collection::of(30);
        c.cap = 10;
        // Every page but the first comes back empty while the count stays 30.
        let shared = Arc::new(Mutex::new(c));
        let server = shared.clone();
        let mut fetch = move |start: u64, count: u32| -> BoxFuture<'static, Result<Page, TenantError>> {
            let mut page = server.lock().unwrap().page(start, count);
            if start > 1 {
                page = Page::of(vec![], Some(30));
            }
            Box::pin(async move { Ok(page) })
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let listing = runtime.block_on(read_pages("Groups", 10, 4, &mut fetch, &mut |_| {}));
        assert!(matches!(listing, Err(TenantError::Protocol(_))), "{listing:?}");
    }

    #[test]
    fn a_deletion_while_listed_makes_the_listing_incomplete() {
        // After the first page, r005 is deleted: the later pages shift left by one, so r011 is
        // never on a page, and the count drops to 29.
        for concurrency in [1, 4] {
            let mut c = Collection::of(30);
            c.change = vec![(2, Box::new(|ids: &mut Vec<String>| ids.retain(|id| id != "r005")))];
            let (listing, got, _) = list(c, 10, concurrency);
            let listing = listing.unwrap();
            assert!(!got.contains(&"r011".to_string()), "shifted out of sight");
            assert!(!listing.complete, "a count that changed proves no absence (concurrency {concurrency})");
        }
    }

    #[test]
    fn a_creation_while_listed_lists_everything_once_and_reads_on_to_the_new_end() {
        // A resource created first, after the first page: the later pages shift right by one
        // (one resource comes twice) and the count grows to 31.
        let mut c = Collection::of(30);
        c.change = vec![(2, Box::new(|ids: &mut Vec<String>| ids.insert(0, "r000".into())))];
        let (listing, got, _) = list(c, 10, 4);
        let listing = listing.unwrap();
        let distinct: HashSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), got.len(), "each resource once");
        assert!(ids(1..=30).iter().all(|id| got.contains(id)), "nothing skipped: {got:?}");
        assert!(!listing.complete, "the count changed while read");
    }

    #[test]
    fn a_delete_and_a_create_between_pages_keep_the_count_but_not_every_resource() {
        // The one case the count cannot reveal: r005 deleted and r031 created after the first
        // page. r011 is then on no page although 30 distinct resources were listed: the
        // listing calls itself complete, and the run confirms each missing object by its id
        // before creating it again (sync::repair::confirm_missing).
        let mut c = Collection::of(30);
        c.change = vec![(
            2,
            Box::new(|ids: &mut Vec<String>| {
                ids.retain(|id| id != "r005");
                ids.push("r031".into());
            }),
        )];
        let (listing, got, _) = list(c, 10, 4);
        assert!(listing.unwrap().complete);
        assert!(!got.contains(&"r011".to_string()));
    }

    #[test]
    fn an_empty_collection_is_one_request() {
        let (listing, got, c) = list(Collection::of(0), 10, 4);
        assert!(listing.unwrap().complete);
        assert!(got.is_empty());
        assert_eq!(c.requests.len(), 1);
    }
}
