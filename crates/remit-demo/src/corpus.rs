//! The built-in internal-docs corpus behind the demo MCP server's
//! `search_docs` tool: short runbook snippets of a fictional retailer,
//! Fernhill Outfitters, and a small case-insensitive term search over them.

use std::cmp::Reverse;

/// One internal-doc snippet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Doc {
    pub(crate) title: &'static str,
    pub(crate) url: &'static str,
    pub(crate) text: &'static str,
}

/// The documents `search_docs` searches.
pub(crate) const CORPUS: [Doc; 8] = [
    Doc {
        title: "Deploying to production",
        url: "https://docs.fernhill.example/runbooks/deploys",
        text: "Production deploys go out from the main branch through the deploy pipeline. \
               Open a deployment for the storefront repo with the release ref, wait for the \
               staging smoke tests, then promote to production. Never deploy on Fridays after \
               14:00 or during a sales event freeze.",
    },
    Doc {
        title: "Rolling back a bad deploy",
        url: "https://docs.fernhill.example/runbooks/rollback",
        text: "If error rates climb after a deploy, roll back first and debug later. Create a \
               deployment of the previous release ref to the same environment; the pipeline \
               skips the smoke tests for rollbacks. Post the rollback in #incidents.",
    },
    Doc {
        title: "On-call handbook",
        url: "https://docs.fernhill.example/runbooks/on-call",
        text: "The on-call engineer is paged for SEV1 and SEV2 incidents and must acknowledge \
               within 10 minutes. Handoff happens every Monday at 10:00: review open incidents, \
               silenced alerts and pending deploys with the next on-call.",
    },
    Doc {
        title: "Incident severity levels",
        url: "https://docs.fernhill.example/runbooks/severity",
        text: "SEV1: checkout or payments down for all customers. SEV2: a major feature degraded \
               or inventory sync stalled for over an hour. SEV3: minor bugs with a workaround. \
               SEV1 and SEV2 page on-call; SEV3 goes to the team backlog.",
    },
    Doc {
        title: "Inventory sync between warehouse and storefront",
        url: "https://docs.fernhill.example/runbooks/inventory-sync",
        text: "The warehouse system pushes stock levels to the storefront inventory API every \
               five minutes. If a SKU shows the wrong quantity, check the sync job's last run, \
               then set the quantity by hand with a PUT on the inventory item and note it in \
               the ticket.",
    },
    Doc {
        title: "Support escalation path",
        url: "https://docs.fernhill.example/runbooks/support-escalation",
        text: "Tier 1 support answers within four hours. Escalate a ticket to tier 2 when it \
               needs a refund over 200 EUR or account changes; escalate to engineering on-call \
               only for suspected outages. Always leave a comment on the ticket explaining the \
               escalation.",
    },
    Doc {
        title: "Refunds and replacements",
        url: "https://docs.fernhill.example/runbooks/refunds",
        text: "Damaged orders get a free replacement or a full refund, customer's choice. Ask for \
               a photo for orders over 100 EUR. Refunds above 200 EUR need tier 2 approval. \
               Bulk order discounts are applied by finance, not support.",
    },
    Doc {
        title: "Rotating API credentials",
        url: "https://docs.fernhill.example/runbooks/credential-rotation",
        text: "Service credentials rotate every 90 days. Issue the new key, deploy it alongside \
               the old one, watch for errors for a day, then revoke the old key. Never paste \
               keys into tickets, comments or chat.",
    },
];

/// The most distinct terms of a query that are searched for.
const MAX_TERMS: usize = 16;

/// Splits a query into distinct lowercase terms, at most [`MAX_TERMS`].
pub(crate) fn terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for term in query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|term| !term.is_empty())
        .map(str::to_lowercase)
    {
        if !terms.contains(&term) {
            terms.push(term);
            if terms.len() == MAX_TERMS {
                break;
            }
        }
    }
    terms
}

/// Documents matching any of `terms`, best first, at most `limit`.
///
/// A title hit counts three times a text hit; ties keep corpus order.
pub(crate) fn search(terms: &[String], limit: usize) -> Vec<&'static Doc> {
    let mut hits: Vec<(usize, &'static Doc)> = CORPUS
        .iter()
        .filter_map(|doc| {
            let title = doc.title.to_lowercase();
            let text = doc.text.to_lowercase();
            let score: usize = terms
                .iter()
                .map(|term| {
                    3 * title.matches(term.as_str()).count() + text.matches(term.as_str()).count()
                })
                .sum();
            (score > 0).then_some((score, doc))
        })
        .collect();
    // Stable sort, so equal scores stay in corpus order.
    hits.sort_by_key(|&(score, _)| Reverse(score));
    hits.into_iter().take(limit).map(|(_, doc)| doc).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercased_deduplicated_and_capped() {
        assert_eq!(terms("Deploy, deploy ROLLBACK!"), ["deploy", "rollback"]);
        let many = (0..40)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(terms(&many).len(), MAX_TERMS);
        assert!(terms("  ,;  ").is_empty());
    }

    #[test]
    fn search_is_case_insensitive_and_ranks_title_hits_first() {
        let hits = search(&terms("INVENTORY"), 5);
        assert_eq!(
            hits.first().map(|doc| doc.url),
            Some("https://docs.fernhill.example/runbooks/inventory-sync")
        );
        assert!(search(&terms("zeppelin"), 5).is_empty());
        assert_eq!(search(&terms("the"), 3).len(), 3);
    }
}
