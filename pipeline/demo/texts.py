"""Text templates with PII slots, rendered to (text, spans).

A text is built as a list of segments: plain strings and `Pii(type, value)`. Rendering joins them and yields the
exact character offsets of every PII value, so the ground truth cannot drift from the text. Near-duplicates mutate
plain segments only, so their spans stay exact too.

Fraud and legitimate scenarios deliberately share vocabulary (card, link, code, urgent, gift card, new SIM,
transfer, charge I didn't recognise ...); the label is carried by what happened (the customer clicked and typed
the code / did not; the charge turned out to be theirs / was not), not by a keyword.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

from pipeline.demo.values import Customer, format_card, format_iban, iban, ipv4, phone_formats


@dataclass(frozen=True)
class Pii:
    type: str
    value: str


Segment = Union[str, Pii]


def render(segments: list[Segment]) -> tuple[str, list[tuple[str, str, int, int]]]:
    """Join segments; return the text and its spans (type, value, start, end)."""
    parts: list[str] = []
    spans: list[tuple[str, str, int, int]] = []
    pos = 0
    for seg in segments:
        if isinstance(seg, Pii):
            spans.append((seg.type, seg.value, pos, pos + len(seg.value)))
            parts.append(seg.value)
            pos += len(seg.value)
        else:
            parts.append(seg)
            pos += len(seg)
    return "".join(parts), spans


# --------------------------------------------------------------------------------------------- template engine

_TOKEN = re.compile(r"\{([A-Z_0-9]+)\}|\[([^\[\]]*)\]")


@lru_cache(maxsize=None)
def _compile(template: str) -> tuple[tuple[str, object], ...]:
    """Template -> parts: ("lit", text) | ("slot", NAME) | ("alt", (parts, parts, ...)).

    `{NAME}` is a slot, `[a|b|c]` picks one alternative (alternatives may hold slots, not brackets)."""
    out: list[tuple[str, object]] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        if m.start() > pos:
            out.append(("lit", template[pos : m.start()]))
        if m.group(1) is not None:
            out.append(("slot", m.group(1)))
        else:
            out.append(("alt", tuple(_compile(a) for a in m.group(2).split("|"))))
        pos = m.end()
    if pos < len(template):
        out.append(("lit", template[pos:]))
    return tuple(out)


MERCHANTS = ("Amazon", "Tesco", "Lidl", "Zalando", "Apple Store", "Uber", "Netflix", "Booking.com", "MediaMarkt",
             "Carrefour", "Walmart", "Best Buy", "Currys", "eBay", "Spotify", "Shell", "IKEA", "Fnac", "Argos",
             "Steam", "Deliveroo", "Airbnb", "Ryanair", "Decathlon", "Boots", "Target", "Costco", "Aldi")
FOREIGN_CITIES = ("Lagos", "Bucharest", "Manila", "Kuala Lumpur", "Lima", "Sofia", "Bangkok", "Dubai", "Istanbul",
                  "Sao Paulo", "Kyiv", "Nairobi", "Hanoi", "Tbilisi")
GIFT_BRANDS = ("Apple", "Google Play", "Steam", "Amazon", "iTunes", "Razer Gold", "Xbox")
SCAM_DOMAINS = ("secure-verify-acc0unt.com", "bank-alerts-help.net", "customer-review-portal.info",
                "id-check-online.co", "refund-dept-hmrc.org", "parcel-redelivery-fee.com")
URL_PATHS = ("login", "verify", "secure/update", "account/restore", "refund/claim", "id/confirm")
CURRENCY = {"en_US": "USD", "en_GB": "GBP", "de_DE": "EUR", "fr_FR": "EUR"}
_SYMBOL = {"USD": "$", "GBP": "£", "EUR": "€"}


def fmt_amount(amount: float, currency: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return f"{_SYMBOL[currency]}{amount:,.2f}"
    if r < 0.85:
        return f"{amount:.2f} {currency}"
    return f"{currency} {amount:,.0f}"


def fmt_dob(iso: str, rng: random.Random) -> str:
    y, m, d = (int(x) for x in iso.split("-"))
    style = rng.randrange(5)
    months = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")
    return (
        iso,
        f"{m:02d}/{d:02d}/{y}",
        f"{d:02d}.{m:02d}.{y}",
        f"{months[m - 1]} {d}, {y}",
        f"{d} {months[m - 1]} {y}",
    )[style]


class Ctx:
    """Resolves template slots for one customer; keeps a few values stable within one text."""

    def __init__(self, customer: Customer, rng: random.Random, pools: "Pools", currency: str | None = None) -> None:
        self.c = customer
        self.rng = rng
        self.pools = pools
        self.currency = currency or CURRENCY[customer.locale]
        self._cache: dict[str, Segment] = {}

    def amount(self) -> float:
        return round(self.rng.lognormvariate(4.3, 1.1), 2)

    def slot(self, name: str) -> Segment:
        if name in self._cache:
            return self._cache[name]
        v = self._resolve(name)
        if name in _STABLE:
            self._cache[name] = v
        return v

    def _resolve(self, name: str) -> Segment:  # noqa: C901 - a flat dispatch table
        c, r = self.c, self.rng
        if name == "NAME":
            return Pii("PERSON", c.name)
        if name == "FIRST":
            return Pii("PERSON", c.first_name)
        if name == "CARD":
            return Pii("CREDIT_CARD", format_card(c.card_number, r.choice(("compact", "space", "space", "dash"))))
        if name == "IBAN":
            return Pii("IBAN_CODE", format_iban(c.iban, r.random() < 0.5))
        if name == "PHONE":
            return Pii("PHONE_NUMBER", _phone_fmt(c.phone, r))
        if name == "EMAIL":
            return Pii("EMAIL_ADDRESS", c.email)
        if name == "ADDR":
            return Pii("STREET_ADDRESS", c.street_address)
        if name == "DOB":
            return Pii("DATE_OF_BIRTH", fmt_dob(c.date_of_birth, r))
        if name == "SSN":
            return Pii("US_SSN", c.ssn)
        if name == "ROUTING":
            return Pii("ABA_ROUTING", c.routing)
        if name == "ACCOUNT":
            return Pii("US_BANK_NUMBER", c.account_number)
        if name == "BIC":
            return Pii("SWIFT_CODE", c.bic)
        if name == "EXPIRY":
            return Pii("CARD_EXPIRY", c.card_expiry)
        if name == "CVV":
            return Pii("CVV", c.cvv)
        if name == "IP":
            return Pii("IP_ADDRESS", c.ip_address)
        if name == "OTHER_IP":
            return Pii("IP_ADDRESS", ipv4(r))
        if name in ("OTHER_NAME", "AGENT"):
            return Pii("PERSON", r.choice(self.pools.names if name == "OTHER_NAME" else self.pools.agents))
        if name == "MULE_IBAN":
            return Pii("IBAN_CODE", format_iban(iban(r, r.choice(("GB", "DE", "NL", "ES", "IT", "FR"))), r.random() < 0.4))
        if name == "SCAM_EMAIL":
            return Pii("EMAIL_ADDRESS", f"{r.choice(('security', 'no-reply', 'support', 'verify', 'refunds'))}@{r.choice(SCAM_DOMAINS)}")
        if name == "SCAM_PHONE":
            return Pii("PHONE_NUMBER", _phone_fmt(r.choice(self.pools.phones), r))
        if name == "URL":
            return f"https://{r.choice(SCAM_DOMAINS)}/{r.choice(URL_PATHS)}?id={r.randrange(10**5, 10**6)}"
        if name == "AMOUNT":
            return fmt_amount(self.amount(), self.currency, r)
        if name == "BIG_AMOUNT":
            return fmt_amount(round(r.uniform(900, 9500), 2), self.currency, r)
        if name == "MERCHANT":
            return r.choice(MERCHANTS)
        if name == "CITY":
            return r.choice(FOREIGN_CITIES)
        if name == "GIFT":
            return r.choice(GIFT_BRANDS)
        if name == "LAST4":
            return c.card_number[-4:]
        if name == "DAY":
            return r.choice(("yesterday", "this morning", "last night", "on Monday", "on Friday", "two days ago",
                             "last week", "on the 3rd", "on the 14th", "at the weekend"))
        if name == "REF":
            return f"{r.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{r.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}-{r.randrange(1000, 99999)}"
        if name == "N":
            return str(r.randint(2, 9))
        if name == "M":
            return str(r.choice((5, 10, 15, 30, 45, 60, 90)))
        raise KeyError(name)

    def fill(self, template: str) -> list[Segment]:
        out: list[Segment] = []
        self._fill(_compile(template), out)
        return out

    def _fill(self, parts: tuple, out: list[Segment]) -> None:
        for kind, v in parts:
            if kind == "lit":
                out.append(v)
            elif kind == "slot":
                out.append(self.slot(v))
            else:
                self._fill(self.rng.choice(v), out)


_STABLE = {"NAME", "FIRST", "EMAIL", "ADDR", "SSN", "ROUTING", "ACCOUNT", "BIC", "EXPIRY", "CVV", "IP", "MERCHANT",
           "LAST4", "GIFT", "CITY", "AMOUNT", "MULE_IBAN", "SCAM_EMAIL", "URL"}


@lru_cache(maxsize=200_000)
def _phone_styles(e164: str) -> tuple[str, ...]:
    styles = ["e164", "intl", "intl", "national", "national"]
    if e164.startswith("+1"):
        styles += ["dashed", "dotted", "dashed"]
    return phone_formats(e164, styles)


def _phone_fmt(e164: str, r: random.Random) -> str:
    return r.choice(_phone_styles(e164))


@dataclass
class Pools:
    names: list[str]
    agents: list[str]
    phones: list[str]


# --------------------------------------------------------------------------------------------- scenario banks
# Each scenario: a list of sentence templates; a text picks 2-3 of them. Fraud and legit share the vocabulary.

FRAUD_SCENARIOS: dict[str, list[str]] = {
    "account_takeover": [
        "Someone [changed|reset] the password on my [online banking|banking app] {DAY} and [now I'm locked out|I can't log in any more|my login no longer works].",
        "I [got|received] [an alert|a notification|an email] that a new device [logged in to|signed into] my account[ from {CITY}|], but [it wasn't me|I never did that|I was asleep at the time].",
        "The [email address|phone number|email and phone number] on my profile [were|was] changed without my knowledge and then {AMOUNT} [went out|was transferred|left my account].",
        "A new payee [was added to my account|appeared on my account] that I never set up, and [a transfer of {BIG_AMOUNT} followed|{BIG_AMOUNT} was sent to it {DAY}].",
        "I did not request the [passcode|security code|one-time code] you sent, and [an hour|a few minutes|twenty minutes] later my [savings were|money was] moved.",
        "[My|The] [standing orders|direct debits|contact details] [have been changed|look different] and I didn't touch them.",
    ],
    "phishing_clicked": [
        "I [got|received] a [text|message|WhatsApp] saying my account [was suspended|had been blocked|needed updating], [so I|and stupidly I] clicked the link and [entered|typed in] my card details.",
        "The email looked [like it came from you|genuine|exactly like your emails], so I followed the link {URL} and [typed in|entered] my login and the code.",
        "[After|Right after|Shortly after] I entered my details on that page, {AMOUNT} was [taken from|debited from] my account.",
        "They asked me for the [one-time passcode|code from the text|security code] and I [read it out|gave it to them|typed it in] before I realised.",
        "The message said my parcel was waiting, I paid the [small|£1.99|€2] fee on the link and [then|the next day] {BIG_AMOUNT} [disappeared|was gone].",
        "I [filled in|completed] a [form|page] that asked for my card number, expiry and [CVV|security code], and now there are payments I don't recognise.",
    ],
    "unrecognised": [
        "There is a charge of {AMOUNT} at {MERCHANT} {DAY} that I [did not make|never authorised|know nothing about].",
        "I don't recognise these [transactions|payments], I have never [shopped at|used] {MERCHANT}[ in my life|].",
        "My card ending {LAST4} is [still in my wallet|in my hand right now|at home with me] but it was used in {CITY}.",
        "[Several|Lots of|About {N}] small payments I didn't make appeared [overnight|{DAY}], then one of {BIG_AMOUNT}.",
        "Nobody else has access to my card and I [have checked with my family|asked everyone at home], none of us made this payment.",
        "[The app shows|I can see] {N} [purchases|withdrawals] [in {CITY}|abroad] {DAY} and I haven't left the country.",
    ],
    "sim_swap": [
        "My phone [suddenly|all of a sudden] lost signal and [showed|said] no SIM, and [the next morning|within hours] [money was gone|{BIG_AMOUNT} had left my account].",
        "The mobile network says my number was [moved|ported] to a new SIM that I never requested.",
        "I stopped getting [text messages|calls and texts] {DAY} and then saw transfers I never made.",
        "Someone [called|contacted] my provider pretending to be me and got a new SIM, [now they have my codes|so they received my security codes].",
        "[My provider|The phone shop] confirmed a SIM replacement {DAY} [that I did not ask for|which wasn't me].",
    ],
    "impersonation": [
        "A [man|woman|caller] called saying [he|she|they] [was|were] from your fraud team and told me to move my savings to a safe account [urgently|immediately|straight away].",
        "[He|She|The caller] knew my name and address and said I had to act [within the hour|today|before midnight] or [lose everything|my account would be frozen].",
        "I transferred {BIG_AMOUNT} to the account [he|she|they] gave me, {MULE_IBAN}, and now [nobody answers|the number is dead].",
        "The caller ID showed the bank's number, so I [believed them|trusted it] and approved the payment in the app.",
        "They said [the police|a colleague] would [visit|call] me and that I must not [tell anyone|speak to the branch].",
    ],
    "gift_cards": [
        "The caller said I owed [taxes|a fine|customs fees] and had to pay with {GIFT} gift cards [immediately|today|within the hour].",
        "I bought {AMOUNT} in {GIFT} gift cards and [read the codes over the phone|sent photos of the codes] to them.",
        "They told me not to tell the [bank|shop] staff why I was buying the cards.",
        "The person on {SCAM_PHONE} kept me on the line while I bought [more|another {N}] gift cards.",
    ],
    "money_mule": [
        "Someone I met [online|on social media|through a job advert] asked me to receive money into my account and forward it on for a commission.",
        "Payments from [strangers|people I don't know] arrived in my account and I was told to send them on to {MULE_IBAN}.",
        "A [work-from-home job|remote job|part-time job] asked me to process customer payments through my personal account.",
        "I was told to withdraw the cash and buy crypto with it, and to keep [10|5|15] percent.",
    ],
    "investment_romance": [
        "I was promised returns of [30%|20%|40%] a [month|week] on a crypto platform and now I can't withdraw anything.",
        "My partner I met [online|on a dating app] asked me to send money for [a flight and hospital fees|a visa|customs charges], I sent {BIG_AMOUNT}.",
        "The platform says I must pay a [release|withdrawal|tax] fee of {AMOUNT} before they return my money.",
        "They contacted me from {SCAM_EMAIL} and said my investment had [tripled|doubled].",
    ],
}

LEGIT_SCENARIOS: dict[str, list[str]] = {
    "locked_out": [
        "I forgot my password and got locked out of [online banking|the app] {DAY}.",
        "I [changed|upgraded] my phone and need to set up the app on the new device.",
        "Can you resend the [one-time passcode|security code]? The text never arrived[ {DAY}|].",
        "I updated my [email address|phone number] on my profile myself, I just want to confirm it went through.",
        "I added a new payee for my [rent|builder|childminder] and the app asked for a code, is that normal?",
        "The app [keeps logging me out|shows an error] when I try to [view statements|make a transfer].",
    ],
    "phishing_ignored": [
        "I [got|received] a [text|message|WhatsApp] saying my account [was suspended|had been blocked], I didn't click [it|the link] and [deleted it|blocked the number].",
        "An email claiming to be from you asked me to verify my details at {URL}; I haven't entered anything, just reporting it.",
        "Someone called asking for my [passcode|PIN|security code], I hung up [straight away|immediately] and didn't give them anything.",
        "The message said my parcel was waiting and asked for a fee, I ignored it because I [wasn't expecting a parcel|knew it was fake].",
        "[A caller|Someone] said they were from your fraud team, so I hung up and [called the number on my card|rang you back] instead.",
    ],
    "recognised": [
        "There is a charge of {AMOUNT} at {MERCHANT} that I didn't recognise at first, but it [was my annual subscription|turned out to be my gym membership].",
        "I checked with my [partner|son|daughter] and the transaction at {MERCHANT} was theirs, so please ignore my earlier message.",
        "The payment in {CITY} was me, I'm [on holiday|working] there this week.",
        "My card ending {LAST4} was declined at {MERCHANT} {DAY}, can you tell me why?",
        "I thought a payment was missing but it was [just still pending|on the next statement], all sorted now.",
        "The unfamiliar name on my statement was [the parent company of {MERCHANT}|my online shop's payment processor], so it's fine.",
    ],
    "merchant_dispute": [
        "I was charged twice by {MERCHANT} for the same order of {AMOUNT}.",
        "{MERCHANT} hasn't delivered my order and [won't answer|ignores my emails], I'd like to dispute the charge.",
        "I returned the item {DAY} but the refund of {AMOUNT} never arrived.",
        "The [hotel|car rental company] charged {BIG_AMOUNT} instead of the price I was quoted, I have the booking confirmation.",
        "I cancelled my [subscription|membership] with {MERCHANT} [last month|in March] and they still took {AMOUNT}.",
    ],
    "new_sim": [
        "I got a new SIM from my provider [last week|{DAY}] and now I don't receive the security codes.",
        "I moved to a new mobile network and kept my number, please update it.",
        "My phone lost signal {DAY} because the provider had an outage, is my account fine?",
        "I ordered a replacement SIM myself after my phone [broke|was stolen], the codes should go to the same number.",
    ],
    "gift_card_purchase": [
        "I bought {GIFT} gift cards for my [niece's birthday|nephew|grandson] and the payment was declined.",
        "Why was my gift card purchase of {AMOUNT} flagged? It was a present.",
        "I'm buying a few {GIFT} gift cards for the [office raffle|school fundraiser|team prizes], please don't block my card.",
        "I [always|usually] buy {GIFT} vouchers at Christmas, the {AMOUNT} payment {DAY} was mine.",
    ],
    "transfer_help": [
        "I sent {AMOUNT} to my [landlord|plumber|sister] but the transfer is still pending.",
        "I need to send {BIG_AMOUNT} [urgently|today] for a [house deposit|car purchase], can you raise my daily limit?",
        "My salary hasn't arrived yet, my employer says it was sent {DAY}.",
        "I want to move money to my own savings account at another bank, {IBAN}.",
        "[Can you|Please] confirm the transfer of {AMOUNT} to my [solicitor|accountant] went through {DAY}?",
    ],
    "travel_admin": [
        "I'm travelling to {CITY} [next week|next month|on Friday], please don't block my card.",
        "My card was declined abroad even though I set a travel notice.",
        "I moved house and need to update my address to {ADDR}.",
        "Please send a new card, mine is [worn|cracked] and the chip stopped working.",
        "[Could you|Can you] increase my [contactless|ATM] limit [while I'm away|for the holidays]?",
    ],
}

FRAUD_KEYS = tuple(FRAUD_SCENARIOS)
NEUTRAL_MIX = 0.35  # share of multi-sentence texts where one sentence is class-neutral
NEUTRAL = [
    "I need this sorted [today|as soon as possible|urgently], [please|thank you].",
    "I'm [really|quite|very] worried about my account.",
    "I've been a customer for [ten|fifteen|over twenty] years and never had a problem like this.",
    "Can you tell me what happens next?",
    "My card ending {LAST4} was declined at {MERCHANT} {DAY}.",
    "I already tried calling but the line was busy.",
    "Please send a new card [to my home address|as soon as you can].",
    "Can you resend the [security code|one-time passcode]? The text never arrived.",
    "I [checked|looked at] the app {DAY} and [something looked off|I wasn't sure about a payment].",
    "[My husband|My wife|My daughter] told me to contact you [straight away|right away].",
]
LEGIT_KEYS = tuple(LEGIT_SCENARIOS)

IDENTITY = [
    "My name is {NAME}.",
    "[This is|It's] {NAME} [speaking|here].",
    "My card number is {CARD}, [expiry|exp|expires] {EXPIRY}.",
    "The card is {CARD}.",
    "You can reach me on {PHONE}[ any time| after 5pm|].",
    "Please call me back [at|on] {PHONE}.",
    "My email is {EMAIL}.",
    "[My IBAN is|The account IBAN is] {IBAN}.",
    "DOB {DOB}.",
    "I was born on {DOB}.",
    "[Date of birth|D.O.B.]: {DOB}.",
    "My address is {ADDR}.",
    "I live at {ADDR}.",
    "My SSN is {SSN} if you need it.",
    "[Routing number|ABA] {ROUTING}, account number {ACCOUNT}.",
    "My bank's [SWIFT|BIC] code is {BIC}.",
    "The [CVV|security code] on the back is {CVV}.",
    "Card {CARD} exp {EXPIRY} [cvv|CVV|cvc] {CVV}.",
]

AGENT = [
    "Thanks {FIRST}, I have [blocked|frozen] the card and opened case {REF}.",
    "Thank you[ {FIRST}|], I can see the transaction and I'm looking into it now.",
    "I understand, let me check the recent activity on your account.",
    "Could you confirm your date of birth and the last four digits of the card?",
    "I've raised this with the disputes team under reference {REF}[, expect an update within {N} days|].",
    "For security I'll send a code to the number on file.",
    "[Please|Kindly] don't share codes or passwords with anyone, including us. Case {REF}.",
]


def _pick(rng: random.Random, bank: list[str], k: int) -> list[str]:
    k = min(k, len(bank))
    return rng.sample(bank, k)


def scenario_sentences(ctx: Ctx, fraud: bool, k: int) -> list[Segment]:
    rng = ctx.rng
    bank = FRAUD_SCENARIOS[rng.choice(FRAUD_KEYS)] if fraud else LEGIT_SCENARIOS[rng.choice(LEGIT_KEYS)]
    picked = _pick(rng, bank, k)
    if k >= 2 and rng.random() < NEUTRAL_MIX:
        # a sentence that fits either class (urgency, worry, card admin): no single sentence gives the label away
        picked[rng.randrange(1, len(picked))] = rng.choice(NEUTRAL)
    segs: list[Segment] = []
    for i, t in enumerate(picked):
        if i:
            segs.append(" ")
        segs.extend(ctx.fill(t))
    return segs


def identity_sentences(ctx: Ctx, k: int) -> list[Segment]:
    segs: list[Segment] = []
    for t in _pick(ctx.rng, IDENTITY, k):
        segs.append(" ")
        segs.extend(ctx.fill(t))
    return segs


OPENERS = ("Hi,", "Hello,", "Hi there,", "Good morning,", "Hello, I need help.", "Hi, quick question.", "Hey,",
           "Hello again,", "Hi, I'm worried about my account.", "Good afternoon,", "Good evening.", "Hi team,",
           "Hello, it's about my card.", "Hi, I'm not sure who to ask.", "Morning,", "Hello there.", "")
CLOSERS = ("", "", "", " Please help.", " What should I do now?", " Thanks.", " This is really stressful.",
           " Can someone call me?", " Thank you in advance.", " I'd appreciate a quick answer.", " Cheers.")
DISPUTE_OPENERS = ("Dispute submitted via app:", "Dispute form, reason given by customer:", "Card dispute:",
                   "Transaction dispute (online form):")


def chat_text(ctx: Ctx, fraud: bool, channel: str, canary: bool = False) -> list[Segment]:
    rng = ctx.rng
    segs: list[Segment] = []
    if channel == "dispute":
        segs.append(rng.choice(DISPUTE_OPENERS) + " ")
    else:
        segs.append(("Customer: " + rng.choice(OPENERS)).rstrip() + " ")
    segs += scenario_sentences(ctx, fraud, rng.randint(2, 3))
    segs.append(rng.choice(CLOSERS))
    if canary:
        segs += _canary_block(ctx)
    else:
        segs += identity_sentences(ctx, rng.choice((0, 1, 1, 2, 2, 3)))
    if channel == "chat" and rng.random() < 0.7:
        segs.append("\nAgent: ")
        segs += ctx.fill(rng.choice(AGENT))
        if rng.random() < 0.5:
            segs.append("\nCustomer: ")
            segs += scenario_sentences(ctx, fraud, 1)
    return segs


def _canary_block(ctx: Ctx) -> list[Segment]:
    return ctx.fill(
        " My name is {NAME}, born on {DOB}, and I live at {ADDR}. Card {CARD}, IBAN {IBAN}, SSN {SSN}. "
        "Account number {ACCOUNT}, SWIFT {BIC}. Email {EMAIL}, phone {PHONE}, my home IP is {IP}."
    )


# --------------------------------------------------------------------------------------------- emails

SUBJECTS_SHARED = ("Suspicious email", "Fwd: Your account has been suspended", "Unauthorised transaction?",
                   "Report: phishing attempt", "Urgent: problem with my card", "Strange text message",
                   "Fwd: Action required - verify your identity", "Question about a payment", "Possible scam",
                   "Fwd: Refund notification")

EMAIL_FRAUD = [
    "I received the message below and, [stupidly|foolishly|without thinking], I clicked the link and entered my [card details|login] and the code.",
    "Since I [replied to|answered] this email {AMOUNT} has been taken from my account in payments I did not make.",
    "I gave them my online banking password because it looked exactly like your website, and now my balance is [wrong|much lower].",
    "The sender asked me to confirm my identity, I did, and {DAY} a transfer of {BIG_AMOUNT} went to {MULE_IBAN}.",
    "They phoned me from {SCAM_PHONE} right after the email and I approved the payment they asked for.",
    "I bought {GIFT} gift cards as the email instructed and sent them the codes.",
    "[I only realised|It only dawned on me] it was a scam when my card was declined [at {MERCHANT}|the next day].",
]
EMAIL_LEGIT = [
    "I received the message below. I did not click the link or reply, I am just forwarding it to you.",
    "I have not entered any details anywhere, but I wanted you to know these emails are going around.",
    "It looks like your website but the address is wrong, so I deleted it after forwarding.",
    "My balance looks fine and I haven't lost anything, I just want to make sure my account is safe.",
    "Is this email genuine? It asks me to confirm my details at {URL} but I haven't done anything yet.",
    "The caller from {SCAM_PHONE} asked for gift cards, I refused and hung up.",
    "[My neighbour|A friend] got the same email, so I [thought you should know|am reporting it for both of us].",
]
FORWARDED = [
    "---------- Forwarded message ----------\nFrom: Security Team <{SCAM_EMAIL}>\nSubject: Your account has been "
    "suspended\n\nDear customer, we detected unusual activity. Verify your identity within 24 hours at {URL} or your "
    "account will be closed.",
    "---------- Forwarded message ----------\nFrom: Refunds <{SCAM_EMAIL}>\nSubject: Refund notification\n\n"
    "You are eligible for a refund of {AMOUNT}. Submit your card details at {URL} to receive it today.",
    "---------- Forwarded message ----------\nFrom: Parcel Service <{SCAM_EMAIL}>\nSubject: Delivery failed\n\n"
    "Your parcel could not be delivered. Pay the redelivery fee at {URL}.",
]
GREETINGS = ("Hello,", "Dear Fraud Team,", "Dear Sir or Madam,", "Hi,", "To whom it may concern,")
SIGNOFFS = ("Regards,", "Kind regards,", "Best wishes,", "Thanks,", "Many thanks,")


def email_body(ctx: Ctx, fraud: bool, canary: bool = False) -> list[Segment]:
    rng = ctx.rng
    segs: list[Segment] = [rng.choice(GREETINGS) + "\n\n"]
    lines = _pick(rng, EMAIL_FRAUD if fraud else EMAIL_LEGIT, rng.randint(2, 3))
    for i, t in enumerate(lines):
        segs.append(" " if i else "")
        segs += ctx.fill(t)
    segs.append(" ")
    segs += scenario_sentences(ctx, fraud, 1)
    if canary:
        segs += _canary_block(ctx)
    else:
        segs += identity_sentences(ctx, rng.choice((0, 1, 2)))
    segs.append("\n\n")
    segs += ctx.fill(rng.choice(FORWARDED))
    segs.append("\n\n" + rng.choice(SIGNOFFS) + "\n")
    segs += ctx.fill(rng.choice(("{NAME}", "{NAME}\n{PHONE}", "{NAME}\n{ADDR}\n{PHONE}", "{FIRST}")))
    segs.append("\n")
    return segs


def email_subject(rng: random.Random) -> str:
    return rng.choice(SUBJECTS_SHARED)


# --------------------------------------------------------------------------------------------- case notes

NOTE_OPEN = [
    "Called {NAME} on {PHONE} regarding {AMOUNT} at {MERCHANT}.",
    "Outbound call to customer {NAME} about the alert on card {CARD}.",
    "Customer {NAME} called in, verified with DOB {DOB} and address {ADDR}.",
    "Reviewed dispute raised by {FIRST} for card ending {LAST4}[ ({AMOUNT})|].",
    "Email from {EMAIL} escalated to fraud ops[ by the contact centre|].",
    "[Inbound|Outbound] call with {NAME}, [ID&V passed|identity verified] [via DOB {DOB}|on {PHONE}].",
]
NOTE_FRAUD = [
    "Customer denies making the transaction; device fingerprint is new and login came from {OTHER_IP}.",
    "Confirmed SIM swap with the mobile provider {DAY}; codes were intercepted.",
    "Customer clicked a phishing link and entered card details; card [blocked and reissued|cancelled].",
    "Funds sent to {MULE_IBAN}, a known mule account; recall requested from beneficiary bank.",
    "Customer was coached by a caller posing as bank staff to move money to a safe account.",
    "Gift card codes were read out to a caller; merchant contacted, cards already redeemed.",
    "Account credentials changed shortly before the transfers; customer had no knowledge of this.",
    "[{N} card-not-present payments|Payments] at {MERCHANT} [from a new device|from {OTHER_IP}] not made by the customer.",
]
NOTE_LEGIT = [
    "Customer recognised the transaction after checking with [spouse|family]; no further action.",
    "Merchant billing error, duplicate charge refunded by {MERCHANT}; not fraud.",
    "Customer reported a phishing email but did not click the link or share details; advised and closed.",
    "New SIM was ordered by the customer themselves; security codes re-registered.",
    "Transfer to own account at another bank; customer confirmed the payee.",
    "Gift card purchase was genuine, customer buying presents; card unblocked.",
    "Login from new device was the customer's new phone; password reset completed.",
    "[Payment|Charge] at {MERCHANT} confirmed by the customer [via app|on the call]; alert closed as genuine.",
]
NOTE_CLOSE = ["Case {REF}.", "Ref {REF}, closed.", "Follow-up in [7|14|3] days, ref {REF}.",
              "Escalated to team lead, ref {REF}.", "Letter sent to {ADDR}.", "[Outcome|Notes] logged under {REF}."]


def case_note(ctx: Ctx, fraud: bool, canary: bool = False) -> list[Segment]:
    rng = ctx.rng
    segs: list[Segment] = ctx.fill(rng.choice(NOTE_OPEN))
    for t in _pick(rng, NOTE_FRAUD if fraud else NOTE_LEGIT, rng.randint(1, 2)):
        segs.append(" ")
        segs += ctx.fill(t)
    # analysts quote the customer: shared vocabulary from the chat scenarios
    if rng.random() < 0.5:
        segs.append(' Customer said: "')
        segs += scenario_sentences(ctx, fraud, 1)
        segs.append('"')
    if canary:
        segs += _canary_block(ctx)
    segs.append(" ")
    segs += ctx.fill(rng.choice(NOTE_CLOSE))
    return segs


# --------------------------------------------------------------------------------------------- alerts

RULES = ("VELOCITY", "GEO_MISMATCH", "NEW_DEVICE", "NEW_PAYEE", "HIGH_AMOUNT", "SIM_CHANGE", "MULE_PATTERN")
ALERT_TEMPLATES = {
    "VELOCITY": "Card ending {LAST4} used {N} times in {M} minutes, last at {MERCHANT} for {AMOUNT}.",
    "GEO_MISMATCH": "Card-present payment in {CITY} while the customer's last login came from {IP}; amount {AMOUNT}.",
    "NEW_DEVICE": "Login from a new device at {OTHER_IP} followed by a payment of {AMOUNT} within {M} minutes.",
    "NEW_PAYEE": "New payee {MULE_IBAN} added and paid {BIG_AMOUNT} on the same day.",
    "HIGH_AMOUNT": "Payment of {BIG_AMOUNT} at {MERCHANT} is {N}x the customer's 90-day average.",
    "SIM_CHANGE": "Phone number {PHONE} reported a SIM change {DAY}; password reset requested after {M} minutes.",
    "MULE_PATTERN": "{N} incoming transfers from unrelated senders forwarded to {MULE_IBAN} within {M} minutes.",
}
ALERT_EXTRA_FRAUD = ("Customer unreachable on {PHONE}.", "Customer denied the activity when called.",
                     "Beneficiary account flagged by another bank.", "Device seen on other compromised accounts.",
                     "Payee name {OTHER_NAME} does not match the account holder.")
ALERT_EXTRA_LEGIT = ("Customer confirmed the activity by app push.", "Customer travelling, travel notice on file.",
                     "Payee is a long-standing beneficiary.", "Device registered by the customer {DAY}.",
                     "Payee name {OTHER_NAME} matches a previous invoice.")


def alert_reason(ctx: Ctx, rule: str, fraud: bool) -> list[Segment]:
    rng = ctx.rng
    segs = ctx.fill(ALERT_TEMPLATES[rule])
    extra = ALERT_EXTRA_FRAUD if (fraud if rng.random() < 0.8 else not fraud) else ALERT_EXTRA_LEGIT
    segs.append(" ")
    segs += ctx.fill(rng.choice(extra))
    if rng.random() < 0.5:
        segs.append(" ")
        segs += ctx.fill(rng.choice(ALERT_EXTRA_LEGIT + ALERT_EXTRA_FRAUD))
    return segs


# --------------------------------------------------------------------------------------------- transactions

MCC = {  # merchant category -> (legit weight, fraud weight)
    "grocery": (25, 3), "restaurants": (14, 2), "fuel": (10, 2), "transport": (8, 2), "utilities": (8, 1),
    "clothing": (8, 6), "electronics": (6, 20), "travel": (5, 10), "digital_goods": (5, 14), "gift_cards": (2, 14),
    "money_transfer": (4, 14), "crypto_exchange": (1, 10), "jewelry": (1, 6),
}
MCC_KEYS = tuple(MCC)
MCC_LEGIT_W = tuple(v[0] for v in MCC.values())
MCC_FRAUD_W = tuple(v[1] for v in MCC.values())

MEMO_LEGIT = [
    "POS purchase {MERCHANT}", "Card payment {MERCHANT}", "Online order {MERCHANT} ref {REF}", "Monthly subscription",
    "Rent payment to {OTHER_NAME}", "Transfer to {OTHER_NAME} {MULE_IBAN}", "Refund from {MERCHANT}",
    "Gift cards for birthday", "Transfer to own savings {IBAN}", "Salary advance repayment", "Utility bill",
    "Contactless payment", "Split dinner bill, thanks {OTHER_NAME}", "Deposit for flat, call {PHONE}",
    "Invoice {REF} paid", "Top-up", "Travel booking {CITY}", "",
]
MEMO_FRAUD = [
    "Online order {MERCHANT} ref {REF}", "Transfer to {OTHER_NAME} {MULE_IBAN}", "Gift cards", "Top-up",
    "Urgent invoice {REF} paid", "Transfer to safe account {MULE_IBAN}", "Crypto purchase", "Card payment {MERCHANT}",
    "Refund fee", "Investment deposit", "Payment for release fee, contact {SCAM_EMAIL}", "",
]


def tx_memo(ctx: Ctx, fraud: bool) -> list[Segment]:
    bank = MEMO_FRAUD if (fraud if ctx.rng.random() < 0.85 else not fraud) else MEMO_LEGIT
    return ctx.fill(ctx.rng.choice(bank))


# --------------------------------------------------------------------------------------------- near duplicates

_SWAPS = {"please": "pls", "and": "&", "I": "i", "my": "My", "the": "the the", "account": "acount", "card": "Card",
          "transaction": "transaction!", "money": "funds", "urgently": "URGENTLY", "now": "right now", "Hi,": "Hi",
          "Hello,": "hello", "immediately": "asap", "yesterday": "yday", "payment": "payement", "but": "but,"}


def shingles(text: str, k: int = 5) -> set[str]:
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))}


def jaccard(a: str, b: str, k: int = 5) -> float:
    sa, sb = shingles(a, k), shingles(b, k)
    return len(sa & sb) / max(1, len(sa | sb))


def near_duplicate(segments: list[Segment], rng: random.Random, min_jaccard: float = 0.85) -> list[Segment] | None:
    """A few characters/words changed in plain segments (PII untouched); None when no variant is near enough."""
    original, _ = render(segments)
    plain_idx = [i for i, s in enumerate(segments) if isinstance(s, str) and len(s.strip()) > 3]
    if not plain_idx:
        return None
    for attempt in range(6):
        segs = list(segments)
        for _ in range(rng.randint(1, 3) if attempt < 3 else 1):
            i = rng.choice(plain_idx)
            segs[i] = _mutate(segs[i], rng)
        text, _ = render(segs)
        if text != original and jaccard(original, text) >= min_jaccard:
            return segs
    return None


def _mutate(s: str, rng: random.Random) -> str:
    words = s.split(" ")
    op = rng.randrange(5)
    cand = [j for j, w in enumerate(words) if w]
    if not cand:
        return s + " "
    j = rng.choice(cand)
    w = words[j]
    if op == 0 and any(x in _SWAPS for x in words):  # word change
        j = rng.choice([k for k, x in enumerate(words) if x in _SWAPS])
        words[j] = _SWAPS[words[j]]
    elif op == 1:  # case change of one word
        words[j] = w.upper() if not w.isupper() else w.lower()
    elif op == 2:  # whitespace
        words[j] = " " + w
    elif op == 3 and len(w) > 3:  # typo: swap two letters
        k = rng.randrange(len(w) - 1)
        words[j] = w[:k] + w[k + 1] + w[k] + w[k + 2 :]
    else:  # drop a word
        if len(cand) > 3:
            words.pop(j)
        else:
            words[j] = w + "."
    return " ".join(words)

