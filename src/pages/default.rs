//! The built-in pages: plain HTML and one stylesheet, no script, readable
//! from a 320 px phone to a desktop, with landmarks, labels and visible
//! focus.

use std::fmt::Write as _;

use super::{ConsentUser, ConsentView, ErrorKind, ErrorView, Html, PageRenderer, escape_html};
use crate::presentation::{ClientIdentity, ClientLink, ConsentPresentation};

/// The built-in consent and error pages.
///
/// The consent page leads with the service the user signs in to, then
/// what is verified about the client (a CIMD client's host, marked
/// "Verified domain"; for a DCR client, the host the user will be sent
/// back to, and its name marked "Unverified name"), then the client's
/// claimed name, what it will be able to do (scope descriptions), on
/// which resources, and Allow (primary) above or right of Deny
/// (secondary). Elements tests and hosts may rely on carry ids:
/// `service-name`, `client-host`, `client-name`, `unverified-name`,
/// `redirect-host`, `loopback-warning`, `app-scheme-warning`, `scopes`,
/// `resources`, `dropped-scopes`, `client-links`, `signed-in-as`,
/// `username`, `approve`, `deny`; on the error page `error-kind`,
/// `error-title`, `error-explanation`, `error-next`, `error-code`,
/// `error-description`, `request-id`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPages;

const STYLE: &str = "\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}\
body{margin:0;background:#f3f4f6;color:#1c2430;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
main{max-width:30rem;margin:0 auto;padding:1rem}\
.card{background:#fff;border:1px solid #d9dee5;border-radius:12px;padding:1.25rem}\
.service{display:flex;align-items:center;gap:.75rem;margin:0 0 1rem}\
.service img{width:40px;height:40px;border-radius:8px;object-fit:contain;flex:none}\
.eyebrow{margin:0;font-size:.875rem;color:#566070}\
h1{margin:0;font-size:1.375rem;line-height:1.3;overflow-wrap:anywhere}\
h2{font-size:1rem;margin:1.25rem 0 .375rem}\
.who{border:1px solid #d9dee5;border-radius:10px;padding:.875rem 1rem;margin:0}\
.who-head{display:flex;align-items:center;gap:.75rem}\
.who-head img{width:36px;height:36px;border-radius:6px;object-fit:contain;flex:none}\
.label{margin:0;font-size:.875rem;color:#566070}\
.host{margin:.125rem 0;font-size:1.25rem;font-weight:700;line-height:1.3;overflow-wrap:anywhere}\
.claimed{margin:.5rem 0 0;overflow-wrap:anywhere}\
.badge{display:inline-block;font-size:.75rem;font-weight:700;line-height:1.4;padding:.125rem .5rem;border-radius:999px;white-space:nowrap}\
.ok{background:#dff3e5;color:#125a29}\
.unverified{background:#fde9c4;color:#6a4300}\
.hint{margin:.375rem 0 0;font-size:.875rem;color:#566070}\
.sent{margin:1rem 0 0}\
.warn{background:#fff3f1;border-left:4px solid #b42318;color:#7a1a12;padding:.625rem .75rem;margin:.75rem 0 0;border-radius:6px}\
.list{list-style:none;padding:0;margin:0}\
.list li{padding:.5rem 0;border-top:1px solid #eceff3}\
.list li:first-child{border-top:0}\
.desc{display:block}\
code{font:.8125rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#566070;overflow-wrap:anywhere}\
.links{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;padding:0;margin:.625rem 0 0;font-size:.875rem}\
a{color:#1c5bb8}\
.note{font-size:.875rem;color:#566070;margin:1rem 0 0}\
.signed-in{margin:1.25rem 0 0}\
label{display:block;margin:1.25rem 0 .25rem;font-weight:600}\
input[type=text]{width:100%;font:inherit;padding:.625rem .75rem;border:1px solid #aeb7c4;border-radius:8px}\
.actions{display:flex;flex-direction:column;gap:.625rem;margin-top:1.25rem}\
button{font:inherit;font-weight:600;padding:.75rem 1rem;border-radius:8px;cursor:pointer;width:100%;min-height:44px}\
.primary{background:#1c5bb8;color:#fff;border:1px solid #1c5bb8}\
.primary:hover{background:#174c9a}\
.secondary{background:#fff;color:#1c2430;border:1px solid #aeb7c4}\
.secondary:hover{background:#f3f4f6}\
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #7aa7ec;outline-offset:2px}\
dl{margin:.5rem 0 0;font-size:.875rem}\
dt{color:#566070;margin-top:.375rem}\
dd{margin:0;overflow-wrap:anywhere}\
.details{margin-top:1.25rem;padding-top:.75rem;border-top:1px solid #eceff3}\
.details h2{margin-top:0;font-size:.875rem;color:#566070}\
.kind-app{border-top:4px solid #b45309}.kind-app .eyebrow{color:#92400e}\
.kind-again{border-top:4px solid #1c5bb8}.kind-again .eyebrow{color:#1c5bb8}\
.kind-address{border-top:4px solid #566070}\
.kind-server{border-top:4px solid #b42318}.kind-server .eyebrow{color:#b42318}\
.kind-busy{border-top:4px solid #566070}\
@media (min-width:36rem){main{padding:3rem 1rem}.card{padding:1.75rem}.actions{flex-direction:row-reverse}.actions button{width:auto;flex:1}}";

impl PageRenderer for DefaultPages {
    fn consent(&self, view: &ConsentView<'_>) -> Html {
        let p = view.presentation();
        let service = escape_html(&p.service.name);
        let mut out = String::with_capacity(8 * 1024);
        let _ = write!(
            out,
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <title>Sign in to {service}</title><style>{STYLE}</style></head><body><main>\
             <div class=\"card\"><header class=\"service\">",
            lang = escape_html(view.language()),
        );
        if let Some(logo) = &p.service.logo_uri {
            let _ = write!(
                out,
                "<img src=\"{}\" alt=\"\" width=\"40\" height=\"40\" referrerpolicy=\"no-referrer\">",
                escape_html(logo)
            );
        }
        let _ = write!(
            out,
            "<div><p class=\"eyebrow\">Sign in to</p><h1 id=\"service-name\">{service}</h1></div></header>"
        );
        client_section(&mut out, p);
        warnings(&mut out, p);
        scopes_section(&mut out, p);
        resources_section(&mut out, p);
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{}\">",
            escape_html(view.form_action())
        );
        for (name, value) in view.hidden_fields() {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            );
        }
        match view.consent_user() {
            ConsentUser::SignedIn { display } => {
                let _ = write!(
                    out,
                    "<p class=\"signed-in\">Signed in as <strong id=\"signed-in-as\">{}</strong></p>",
                    escape_html(display)
                );
            }
            ConsentUser::LoginField { name, label, value } => {
                let _ = write!(
                    out,
                    "<label for=\"username\">{}</label><input type=\"text\" id=\"username\" name=\"{}\" \
                     value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required>",
                    escape_html(label),
                    escape_html(name),
                    escape_html(value)
                );
            }
            _ => {}
        }
        let who = match &p.client.identity {
            ClientIdentity::Verified { host } => escape_html(host),
            _ => "this app".to_owned(),
        };
        let _ = write!(
            out,
            "<div class=\"actions\">\
             <button type=\"submit\" id=\"approve\" class=\"primary\" name=\"action\" value=\"approve\">Allow</button>\
             <button type=\"submit\" id=\"deny\" class=\"secondary\" name=\"action\" value=\"deny\">Deny</button>\
             </div></form>\
             <p class=\"note\">Allow only if you started this sign-in and trust {who}. \
             Allowing lets it act as you on {service} within the permissions above.</p>"
        );
        if let Some(id) = view.shown_request_id() {
            let _ = write!(out, "<p class=\"note\">Request id <code>{}</code></p>", escape_html(id));
        }
        out.push_str("</div></main></body></html>");
        Html::new(out).allow_inline_style(STYLE)
    }

    fn error(&self, view: &ErrorView) -> Html {
        let kind = view.kind;
        let mut out = String::with_capacity(4 * 1024);
        let _ = write!(
            out,
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <title>{headline}</title><style>{STYLE}</style></head><body><main>\
             <div class=\"card {class}\" role=\"alert\">\
             <p class=\"eyebrow\" id=\"error-kind\">{label}</p>\
             <h1 id=\"error-title\">{headline}</h1>\
             <p id=\"error-explanation\">{explanation}</p>\
             <p id=\"error-next\"><strong>What to do:</strong> {next}</p>\
             <section class=\"details\" aria-labelledby=\"details-title\"><h2 id=\"details-title\">Details</h2><dl>\
             <dt>Error</dt><dd><code id=\"error-code\">{code}</code></dd>",
            lang = escape_html(&view.lang),
            class = kind_class(kind),
            label = kind.label(),
            headline = kind.headline(),
            explanation = kind.explanation(),
            next = kind.next_step(),
            code = escape_html(view.code.as_str()),
        );
        if let Some(d) = &view.description {
            let _ = write!(
                out,
                "<dt>Reason</dt><dd id=\"error-description\">{}</dd>",
                escape_html(d)
            );
        }
        if let Some(id) = &view.request_id {
            let _ = write!(
                out,
                "<dt>Request id</dt><dd><code id=\"request-id\">{}</code></dd>",
                escape_html(id)
            );
        }
        out.push_str("</dl></section></div></main></body></html>");
        Html::new(out).allow_inline_style(STYLE)
    }
}

/// The error card's accent, by whose fault it is.
const fn kind_class(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ClientMisconfigured => "kind-app",
        ErrorKind::StartAgain => "kind-again",
        ErrorKind::UnknownService => "kind-address",
        ErrorKind::Busy => "kind-busy",
        _ => "kind-server",
    }
}

/// Who is asking: the verified fact first, the claimed name second.
fn client_section(out: &mut String, p: &ConsentPresentation) {
    let name = escape_html(p.client_name_or_default());
    let redirect_host = p.redirect.host.as_deref().map(escape_html);
    out.push_str("<section class=\"who\" id=\"client\" aria-labelledby=\"client-label\">");
    match &p.client.identity {
        ClientIdentity::Verified { host } => {
            out.push_str("<div class=\"who-head\">");
            if let Some(logo) = p.client.logo.as_ref().filter(|l| l.verified) {
                let _ = write!(
                    out,
                    "<img src=\"{}\" alt=\"\" width=\"36\" height=\"36\" referrerpolicy=\"no-referrer\">",
                    escape_html(&logo.uri)
                );
            }
            let _ = write!(
                out,
                "<div><p class=\"label\" id=\"client-label\">Request from</p>\
                 <p class=\"host\" id=\"client-host\">{}</p>\
                 <span class=\"badge ok\" id=\"verified-badge\">Verified domain</span></div></div>\
                 <p class=\"claimed\">It calls itself <strong id=\"client-name\">{name}</strong></p>",
                escape_html(host)
            );
            links(out, &p.client.links);
            match (&redirect_host, &p.redirect.app_scheme) {
                (Some(h), _) => {
                    let _ = write!(
                        out,
                        "<p class=\"sent\">After you decide, you will be sent to <strong id=\"redirect-host\">{h}</strong>.</p>"
                    );
                }
                (None, Some(scheme)) => {
                    let _ = write!(
                        out,
                        "<p class=\"sent\">After you decide, you will be sent to the app that opens \
                         <strong id=\"redirect-host\">{}:</strong> links.</p>",
                        escape_html(scheme)
                    );
                }
                (None, None) => {}
            }
        }
        _ => {
            let _ = write!(out, "<p class=\"label\" id=\"client-label\">Access will be sent to</p>");
            match (&redirect_host, &p.redirect.app_scheme) {
                (Some(h), _) => {
                    let _ = write!(out, "<p class=\"host\" id=\"redirect-host\">{h}</p>");
                }
                (None, Some(scheme)) => {
                    let _ = write!(
                        out,
                        "<p class=\"host\"><span id=\"redirect-host\">{}:</span> app on this device</p>",
                        escape_html(scheme)
                    );
                }
                (None, None) => {}
            }
            let _ = write!(
                out,
                "<p class=\"claimed\">It calls itself <strong id=\"client-name\">{name}</strong> \
                 <span class=\"badge unverified\" id=\"unverified-name\">Unverified name</span></p>\
                 <p class=\"hint\">Any app can register under any name; this one has not been checked. \
                 Continue only if you recognise the host above.</p>"
            );
            links(out, &p.client.links);
        }
    }
    out.push_str("</section>");
}

/// The client's links; unverified ones say so.
fn links(out: &mut String, links: &[ClientLink]) {
    if links.is_empty() {
        return;
    }
    out.push_str("<ul class=\"links\" id=\"client-links\" aria-label=\"Links provided by the app\">");
    for l in links {
        let _ = write!(
            out,
            "<li><a href=\"{}\" rel=\"noopener noreferrer nofollow\" target=\"_blank\">{}</a> <code>{}</code>",
            escape_html(&l.uri),
            l.kind.label(),
            escape_html(&l.host)
        );
        if !l.verified {
            out.push_str(" <span class=\"badge unverified\">unverified</span>");
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
}

fn warnings(out: &mut String, p: &ConsentPresentation) {
    if p.redirect.loopback_only {
        out.push_str(
            "<p class=\"warn\" id=\"loopback-warning\"><strong>Warning:</strong> this app only sends you back to \
             your own computer (localhost). Anyone can publish an app like this; continue only if you started this \
             sign-in yourself.</p>",
        );
    }
    if let Some(scheme) = &p.redirect.app_scheme {
        let _ = write!(
            out,
            "<p class=\"warn\" id=\"app-scheme-warning\"><strong>Warning:</strong> you will be sent to the app that \
             handles <strong>{}:</strong> links on this device. Any installed app can claim such links; continue \
             only if you started this sign-in yourself.</p>",
            escape_html(scheme)
        );
    }
}

fn scopes_section(out: &mut String, p: &ConsentPresentation) {
    out.push_str("<h2 id=\"scopes-title\">It will be able to</h2><ul class=\"list\" id=\"scopes\" aria-labelledby=\"scopes-title\">");
    if p.scopes.is_empty() {
        out.push_str("<li>Confirm that you signed in (no other permissions)</li>");
    }
    for s in &p.scopes {
        match &s.description {
            Some(d) => {
                let _ = write!(
                    out,
                    "<li><span class=\"desc\">{}</span><code>{}</code></li>",
                    escape_html(d),
                    escape_html(&s.scope)
                );
            }
            None => {
                let _ = write!(out, "<li><code>{}</code></li>", escape_html(&s.scope));
            }
        }
    }
    out.push_str("</ul>");
    if !p.dropped_scopes.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\" id=\"dropped-scopes\">Not granted (not offered here): <code>{}</code></p>",
            escape_html(&p.dropped_scopes.join(" "))
        );
    }
}

fn resources_section(out: &mut String, p: &ConsentPresentation) {
    if p.resources.is_empty() {
        return;
    }
    out.push_str(
        "<h2 id=\"resources-title\">With access to</h2><ul class=\"list\" id=\"resources\" aria-labelledby=\"resources-title\">",
    );
    for r in &p.resources {
        match &r.name {
            Some(n) => {
                let _ = write!(
                    out,
                    "<li><span class=\"desc\">{}</span><code>{}</code></li>",
                    escape_html(n),
                    escape_html(&r.uri)
                );
            }
            None => {
                let _ = write!(out, "<li><code>{}</code></li>", escape_html(&r.uri));
            }
        }
    }
    out.push_str("</ul>");
}
