// The market's pages in a browser: sign in with a wallet (EIP-1193 personal_sign of an EIP-4361 message),
// claim, upload and submit, review with a reason, withdraw. Everything goes through the JSON API with the
// session cookie and the page's CSRF token (X-CSRF-Token); no build step, no dependencies.
"use strict";

const $ = (sel) => document.querySelector(sel);
const me = () => document.body.dataset.me || "";
const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

function say(text, bad) {
  const el = $("#status");
  el.textContent = text;
  el.className = bad ? "bad" : "ok";
}

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } };
  if (body instanceof Blob) {
    opts.body = body;
    opts.headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, opts);
  const data = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok) throw new Error((data && data.detail) || `${r.status} ${r.statusText}`);
  return data;
}

async function account() {
  if (!window.ethereum) throw new Error("no browser wallet found (an EIP-1193 provider such as MetaMask)");
  const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
  if (!address) throw new Error("the wallet shared no account");
  if (me() && address.toLowerCase() !== me().toLowerCase())
    throw new Error(`the wallet's account ${address} is not the signed-in ${me()}: switch accounts or sign in again`);
  return address;
}

const hexUtf8 = (text) =>
  "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const personalSign = async (text, address) =>
  window.ethereum.request({ method: "personal_sign", params: [hexUtf8(text), address] });

// ---------------------------------------------------------------- sign in / out

async function signIn() {
  const wallet = await account();
  // the server returns the EIP-55 spelling (wallets hand out lower-case; EIP-4361 requires checksummed)
  const info = await api("POST", "/auth/nonce", { address: wallet });
  // domain and URI are where this page really is, never what the server says: a phishing copy of this page
  // gets a message the real market refuses
  const message = [
    `${location.host} wants you to sign in with your Ethereum account:`,
    info.address,
    "",
    "Sign in to the loopylab data market.",
    "",
    `URI: ${location.origin}/`,
    "Version: 1",
    `Chain ID: ${info.chain_id}`,
    `Nonce: ${info.nonce}`,
    `Issued At: ${iso(Date.now())}`,
    `Expiration Time: ${iso(Date.now() + 10 * 60 * 1000)}`,
  ].join("\n");
  const signature = await personalSign(message, wallet);
  await api("POST", "/auth/login", { message, signature });
  location.reload();
}

async function signOut() {
  await api("POST", "/auth/logout");
  location.reload();
}

// ---------------------------------------------------------------- contributor

async function claim(el) {
  const c = await api("POST", `/bounties/${el.dataset.bounty}/claims`);
  say(`slot claimed (claim ${c.id})`);
  location.reload();
}

// Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True): what the rig signs
function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value && typeof value === "object")
    return "{" + Object.keys(value).sort().map((k) => canonical(k) + ":" + canonical(value[k])).join(",") + "}";
  // as Python's json.dumps(ensure_ascii=True): everything outside " "..."~" is escaped, DEL (0x7f) included
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

async function submit(el) {
  const files = Array.from($("#files").files);
  if (!files.length) throw new Error("choose the recording's files first (.mcap, .nb, ...)");
  const wallet = await account();
  if (el.dataset.rig !== "yes") {
    // this wallet is the rig: it signs that it belongs to the signed-in account, then signs the manifest
    const text = `loopylab rig ${me()} belongs to ${me()}`;
    await api("POST", "/rigs", { address: me(), signature: await personalSign(text, wallet), label: "browser wallet" });
  }
  const entries = [];
  for (const [i, f] of files.entries()) {
    say(`uploading ${f.name} (${i + 1} of ${files.length})`);
    const blob = await api("PUT", "/blobs", f);
    entries.push({ path: f.name, sha256: blob.sha256, size: blob.size });
  }
  const manifest = {
    version: 1,
    bounty_id: Number(el.dataset.bounty),
    rig: me(),
    created_at: Math.floor(Date.now() / 1000),
    files: entries.sort((a, b) => (a.path < b.path ? -1 : 1)),
  };
  const signature = await personalSign(canonical(manifest), wallet);
  say("verifying");
  const sub = await api("POST", `/claims/${el.dataset.claim}/submission`, { manifest, signature });
  location.href = `/submission/${sub.id}`;
}

// ---------------------------------------------------------------- requester

async function review(el) {
  const approve = el.dataset.approve === "yes";
  const reason = $("#reason").value.trim();
  if (!approve && !reason) throw new Error("a rejection needs a reason the contributor can act on");
  const body = { approve, reason };
  if (approve) {
    const wallet = await account();
    const typed = await api("GET", `/submissions/${el.dataset.submission}/approval`);
    body.signature = await window.ethereum.request({
      method: "eth_signTypedData_v4",
      params: [wallet, JSON.stringify(typed)],
    });
  }
  await api("POST", `/submissions/${el.dataset.submission}/review`, body);
  location.reload();
}

// ---------------------------------------------------------------- money

async function withdraw() {
  const out = await api("POST", "/withdraw");
  say(`withdrew ${Number(BigInt(out.amount_wei) / 10n ** 12n) / 1e6} ETH to ${out.address}`);
  $("#withdrawable").textContent = "0 ETH";
}

const ACTIONS = { signIn, signOut, claim, submit, review, withdraw };

document.addEventListener("click", async (event) => {
  const el = event.target.closest("[data-action]");
  if (!el) return;
  event.preventDefault();
  el.disabled = true;
  try {
    await ACTIONS[el.dataset.action](el);
  } catch (e) {
    say(e.message || String(e), true);
  } finally {
    el.disabled = false;
  }
});
