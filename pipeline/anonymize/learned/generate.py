"""Training data for the learned PII detector: Faker across many locales + this module's own templates.

Versioned: `GENERATOR_VERSION` + seed + the sha256 of the generated corpus (`corpus_sha256`) identify the data a
model was trained on (its model card records all three). Deterministic: one `random.Random` per corpus, Faker
instances seeded from it, no wall clock.

Disjoint from evaluation: the templates below are written for this module only. They share no template with
pipeline/anonymize/eval_set/build.py (EVAL_TEMPLATES) nor with the demo generator (pipeline/demo/texts.py) whose
writing styles the shipped evaluation set also uses, and nothing comes from presidio-evaluator / presidio-research
or ../shared/data/pii_benchmark. `disjointness_report` checks it: no generated text's skeleton (slots masked) equals
an evaluation text's skeleton, and no evaluation text occurs verbatim in the corpus. Seeds: training `TRAIN_SEED`,
held-out `HELDOUT_SEED`; the evaluation set uses 917331 (eval_set/build.py).

A record: {"text", "spans": [{"type", "start", "end"}], "slots": [[start, end], ...], "style"}; `spans` are the
labels the NER learns (PERSON, STREET_ADDRESS, GPE, ORG, DATE, TIME, NORP), `slots` every inserted value as
[start, end, slot name] including identifiers (card, IBAN, phone, e-mail ...) which the NER does not learn (rule
recognizers own them) and which rehearsal labels never cover; `eval_spans` gives the evaluation labels (NER labels
plus the identifier slots as Presidio types).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any, Callable, Iterator, Optional

GENERATOR_VERSION = "pii-gen-1.4"
TRAIN_SEED = 20_260_117
HELDOUT_SEED = 73_310_442

LOCALES = ("en_US", "en_GB", "en_IE", "en_AU", "en_CA", "en_NZ", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CA",
           "es_ES", "es_MX", "it_IT", "nl_NL", "nl_BE", "pl_PL", "pt_PT", "pt_BR", "sv_SE", "da_DK", "no_NO",
           "fi_FI", "cs_CZ", "sk_SK", "hu_HU", "ro_RO", "hr_HR", "tr_TR", "en_IN", "id_ID", "et_EE",
           "lv_LV", "lt_LT", "sl_SI")

# names Faker's Latin locales rarely produce (romanised Arabic, West African, South / East Asian, Gaelic)
EXTRA_FIRST = """Omar Layla Yusuf Fatima Khalid Noor Hamza Aisha Tariq Samira Mehmet Zeynep Chinedu Amara Kwame Abena
Oluwaseun Ngozi Tendai Thabo Priya Rajesh Venkatesh Lakshmi Arjun Ananya Wei Mei Jian Xiu Hiroshi Yuki Min-jun Seo-yeon
Nguyen Thi Linh Bao Siobhan Niamh Padraig Eoghan Aoife Ciaran Bjorn Sigrid Astrid Leif Ingrid Dmitri Oksana Yaroslav
Svetlana Giorgos Eleni Anastasia Mateo Lucia Joao Ines Zoltan Agnieszka Wojciech Jiri Radka Sinead Declan Rory
Mohammed Ahmed Hassan Rania Youssef Leila Karim Nadia Sanjay Deepa Ravi Kavya Chen Ling Jun Haruto Sakura""".split()
EXTRA_LAST = """Okafor Nwosu Mensah Boateng Adeyemi Mahlangu Iyer Patel Sharma Reddy Nair Zhang Wang Li Liu Chen Tanaka
Sato Kim Park Tran Pham Nguyen Kowalczyk Novak Horvath Popescu Ivanova Petrov Papadopoulos Yilmaz Demir Haddad
Mansour Karimi Hosseini Rahman Chowdhury Siddiqui Quispe Mamani Fitzgerald Byrne Doherty Gallagher Kavanagh Lindqvist
Johansson Nieminen Virtanen Halvorsen Dubois Lefebvre Moreau Rossi Esposito Bianchi Fernandes Oliveira Silva""".split()
PARTICLE_LAST = [("van der", "Berg Linden Meer Heijden Wal Veen Velde"), ("van den", "Bosch Broek Heuvel Berg"),
                 ("van", "Dijk Leeuwen Houten Rijn Dam Vliet"), ("de", "Vries Jong Groot Boer Wit Souza Santos"),
                 ("de la", "Cruz Fuente Rosa Torre Vega"), ("del", "Rio Valle Monte Castillo"),
                 ("della", "Rovere Valle Porta"), ("di", "Stefano Matteo Giorgio Lorenzo"), ("da", "Silva Costa Rocha"),
                 ("dos", "Santos Reis Anjos"), ("von", "Trapp Richter Weizsacker Bismarck Stein"),
                 ("von der", "Leyen Heide"), ("le", "Roux Blanc Goff Brun"), ("la", "Fontaine Rue"),
                 ("bin", "Rashid Salman Hamad Zayed"), ("ibn", "Saud Khaldun"), ("al", "Sayed Amin Masri"),
                 ("El", "Amrani Idrissi Fassi Mansouri"), ("ter", "Horst Stege"), ("ten", "Brink Hove Cate")]
HYPHEN_PREFIX = [("Al-", "Farsi Hashimi Rashid Mansoori Qasimi Shamsi Zahrani Otaibi Harbi Najjar"),
                 ("O'", "Sullivan Brien Connor Neill Reilly Donnell Mahony Leary Driscoll Keeffe"),
                 ("Mc", "Donald Carthy Kenna Grath Laughlin Intyre Bride Allister"),
                 ("Mac", "Leod Donald Kenzie Intosh Pherson Neil Aulay"),
                 ("D'", "Angelo Amico Souza Costa Arcy"), ("Fitz", "gerald patrick william")]
TITLES = ["Mr", "Mrs", "Ms", "Miss", "Dr", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Sir", "Mx"]
SUFFIXES = ["Jr.", "Sr.", "II", "III", "Jr"]
STREET_WORDS = """Birch Oak Maple Elm Willow Cedar Harbour Mill Church Station Victoria Albert Queens Kings Park High Bridge
Meadow Orchard Chapel Castle Rose Hawthorn Ash Beech Chestnut Linden Lake River Forest Hill Valley Garden Spring
Market Abbey Princes Regent York Cambridge Windsor Granite Copper Silver Golden Heron Falcon Kestrel Juniper""".split()
STREET_TYPES = ["Lane", "Road", "Rd", "Rd.", "Street", "St", "St.", "Avenue", "Ave", "Ave.", "Boulevard", "Blvd",
                "Close", "Crescent", "Drive", "Dr", "Way", "Court", "Ct", "Terrace", "Place", "Pl", "Square", "Row",
                "Gardens", "Grove", "Mews", "Walk", "Parkway", "Highway", "Hwy", "Quay", "Wharf", "Hill"]
FOREIGN_STREETS = ["{w}straße {n}", "{w}strasse {n}", "{w}gasse {n}", "{w}weg {n}", "{w}laan {n}", "{w}straat {n}",
                   "rue de la {w} {n}", "{n} rue des {w}s", "{n}, rue {w}", "Calle {w} {n}", "Avenida {w} {n}",
                   "Via {w} {n}", "ul. {w}owa {n}", "{w}vej {n}", "{w}gatan {n}", "Rua {w} {n}", "{w}utca {n}"]
UNITS = ["Apt {n}", "Apt. {n}{l}", "Suite {n}", "Flat {n}", "Unit {n}", "#{n}", "Floor {n}", "Room {n}", "Ste {n}"]
COUNTRIES = """Ireland United Kingdom UK Germany France Spain Portugal Italy Netherlands Belgium Poland Sweden Norway
Denmark Finland Austria Switzerland Czechia Hungary Romania Croatia Turkey India Nigeria Ghana Kenya Brazil Mexico
Canada Australia USA Japan Vietnam Philippines Indonesia Morocco Egypt UAE Qatar""".split()
COUNTRIES = [c.replace("_", " ") for c in COUNTRIES] + ["United States", "South Africa", "New Zealand",
                                                          "Saudi Arabia", "Czech Republic", "Sri Lanka"]
MERCHANTS_NEG = ["Amazon Marketplace", "Ryanair", "Tesco Express", "Uber Eats", "Netflix", "Apple Store", "Steam",
                 "Lidl", "Booking.com", "Deliveroo", "Shell", "Zara", "IKEA", "Spotify", "Aldi", "Vodafone",
                 "Western Union", "Revolut", "Coinbase", "Binance", "DHL Express", "FedEx", "Royal Mail", "An Post"]
COURIERS = ["DHL", "FedEx", "UPS", "Royal Mail", "An Post", "DPD", "Evri", "GLS", "PostNL", "La Poste", "USPS"]


# ------------------------------------------------------------------------------------------------ templates
# Slots: {P} person, {P2} a second person, {FN} first name only, {TP} title + surname, {A} address (any form),
# {A1} one-line address, {AB} multi-line address block, {ST} street line only, {C} city, {CO} country,
# {CC} "city, country", {ORG} company, {PH} phone, {EM} e-mail, {CARD} card number, {L4} last 4, {IBAN}, {BIC},
# {ACC} account number, {SORT} sort code, {AMT} amount, {DATE}, {TIME}, {REF} reference id, {IP} IP address,
# {M} merchant (not PII), {COUR} courier (not PII), {PC} postcode (inside no person/address: labelled as address).
CHAT = [
    "hi this is {P}, i think someone used my card {L4} at {M} last night",
    "hello my name is {P} and i didnt make the payment of {AMT} to {M}",
    "{FN} here, the guy on the phone said he was from the bank and asked me to move {AMT}",
    "can u send the new card to {A1} pls, im staying with my sister {P2}",
    "its {P}, my number changed to {PH}",
    "i got a text saying my parcel from {COUR} is stuck, they wanted {AMT} and i paid it",
    "my husband {P2} says he never got the card, we live at {A1}",
    "Hi, {P} again. Still waiting on the refund for {REF}. You can reach me on {PH}.",
    "who is {P}?? there's a transfer to them for {AMT} i never authorised",
    "ok so the courier came to {A1} and took my card, he said his name was {FN}",
    "Morning! {P} from {C} here - my app is locked after I tried to log in from {IP}",
    "pls call me back on {PH} ask for {FN}",
    "this is {TP}, I'm abroad in {CC} and my card got declined",
    "yeah the account is under my mums name {P2}",
    "my daughter {FN} made the purchase, sorry, please cancel the dispute",
    "Thanks {FN}! And the address is still {A1}",
    "sent {AMT} to {P2} for a puppy and now they blocked me",
    "Hey it's {P} ({PH}) - can you check if the payment to {P2} went through?",
    "{P} {PH} - urgent, card stolen in {C}",
    "they said they were from {ORG} and needed my pin",
]
EMAIL = [
    "Dear Sir or Madam,\n\nI am writing to dispute a charge of {AMT} on {DATE}. I did not authorise it.\n\nKind regards,\n{P}\n{AB}\n{PH}",
    "Hello,\nPlease update my correspondence address to:\n{AB}\nThank you,\n{P}",
    "From: {P} <{EM}>\nTo: disputes@bank.example\nSubject: Unknown transfer\n\nA transfer of {AMT} to {P2} left my account on {DATE}. I never met this person.",
    "Hi team,\n\n{P2} from {ORG} asked me to pay the invoice into a new account ({IBAN}). Is this genuine?\n\nBest,\n{FN}",
    "Dear {TP},\nWe have received your claim {REF}. Our investigator {P2} will contact you within 5 working days.",
    "To whom it may concern, my name is {P} and I hold an account with you since {DATE}. My current address is {A1}.",
    "Good afternoon,\nMy elderly father, {P2}, was called by someone claiming to be from the police and handed his card to a courier at his home, {A1}.\nRegards, {P}",
    "Sent from my iPhone\n\n> On {DATE}, {P} <{EM}> wrote:\n> please confirm the new beneficiary",
    "Re: your statement\n\n{P}\n{ORG}\n{AB}\nTel: {PH}\nEmail: {EM}",
    "Hi,\nI moved from {A1} to {A1} last month, please change it on file. Thanks, {P}",
    "Dear customer service, I, {P}, request the closure of account {ACC}. Please post the final statement to {A1}.",
    "Hello, this is {P2}'s lawyer, {P}. My client did not authorise the payment of {AMT}.",
]
CASE = [
    "Case {REF}: cust {P} rang at {TIME}, reports card {L4} lost in {C}. New card ordered to {A1}.",
    "Analyst note - {P} states a man named {P2} called pretending to be from our fraud team. Cust transferred {AMT}.",
    "Spoke w/ {P} re chargeback. Merchant {M} refuses refund. Advised to wait 10 days.",
    "Outbound call to {PH} unanswered; voicemail left for {TP}.",
    "{P} (DOB {DATE}) confirmed ID; address on file {A1} matches utility bill.",
    "Possible mule: funds from {P2} forwarded within minutes to {IBAN}. Holder {P} says a friend asked him.",
    "victim {P} was told by 'bank staff' {P2} to move savings to a safe account",
    "Escalated to {P2} in the {C} office. Customer {P} very distressed.",
    "Courier scam: {COUR} lookalike text, cust {FN} paid {AMT} redelivery fee, card then used at {M}.",
    "Cust visited branch at {A1}; teller {P2} noted nervous behaviour and a third party waiting outside.",
    "Review: beneficiary {P} at {IBAN} added yesterday from a new device in {CC}.",
    "CALLER IDENTIFIED AS {P}, HOLDER OF ACCT {ACC}. STATES HE NEVER RECEIVED GOODS.",
    "note: {P} asked that statements go to her work address {A1} not home",
    "{DATE} {TIME} - {P} disputes {AMT} at {M}; c/b reason 4837",
    "Per {P2} (compliance), hold the payment to {P} until source of funds is verified.",
]
KYC = [
    "KYC review\nName: {P}\nDate of birth: {DATE}\nAddress: {A1}\nNationality: {NAT}\nOccupation: engineer",
    "Onboarding - applicant {P}, lives at {A1}, previously {A1}. Employer {ORG}.",
    "PEP screening hit on {P}; resolved as false positive (different DOB, based in {CC}).",
    "Source of wealth: inheritance from {P2} (deceased {DATE}), property at {A1} sold.",
    "Proof of address: council tax bill in the name of {P}, {A1}.",
    "EDD: customer {P} runs {ORG}, registered office {A1}, {CO}.",
    "Name on passport {P} does not match name on application {P2}.",
    "Director: {P}; shareholder: {P2}; registered at {AB}",
    "Customer {P}, born in {C}, resident of {CC} since {DATE}.",
]
MEMO = [
    "TRANSFER TO {P} REF {REF}",
    "SEPA CT {P} {IBAN} INVOICE {REF}",
    "FPS PAYMENT {P} RENT",
    "CARD PAYMENT {M} {C} {DATE}",
    "Standing order to {P} - monthly allowance",
    "P2P {FN} dinner split",
    "refund from {M} for order {REF}",
    "Payment to {P2}, {A1}",
    "CHQ DEP {P} {AMT}",
    "Wire: beneficiary {P}, {IBAN}, BIC {BIC}, {CO}",
    "Bill pay {ORG} acct {ACC}",
    "ATM WDL {C} {DATE} {TIME}",
    "mobile transfer to {P} ({PH})",
]
ADDRESS = [
    "{AB}",
    "Deliver to: {P}\n{AB}",
    "{P}\n{AB}",
    "Ship to {P}, {A1}",
    "Billing address: {A1}",
    "Address: {A1}. Phone: {PH}.",
    "The package was left at {A1} with a neighbour.",
    "Registered address {A1}; trading address {A1}.",
    "Return to sender: {A1}",
]
NARRATIVE = [
    "{P} worked at {ORG} in {C} before moving to {CO}.",
    "I met {P} and {P2} at a conference in {C}.",
    "My name is {P}, I'm from {C} and I live at {A1}.",
    "{FN} grew up in {CC} and studied in {C}.",
    "We moved here from {C} in {DATE}.",
    "{P} is the new head of payments at {ORG}.",
    "Please ask {TP} to sign the form and return it to {A1}.",
    "According to {P}, the meeting in {C} was cancelled.",
    "{P}'s brother {FN} lives at {A1}.",
    "The flat at {A1} is rented by {P} and {P2}.",
    "I'm {P}, {AGE} years old, currently living in {C}.",
    "{P} and I are travelling to {CC} on {DATE}.",
    "Contact person: {P}, {ORG}, {PH}",
    "Signed, {P}, {DATE}, {C}",
    "\"We need to leave now,\" {FN} told {FN}.",
    "{FN} grinned at {FN}: \"You forgot the keys again?\"",
    "{FN}, could you forward this to your manager?",
    "When {FN} arrived, {FN} had already gone home.",
    "The {LN} family sold the house at {A1} in {DATE}.",
    "As in the {LN} file last year, the money went abroad.",
    "{FN}, {FN} and {FN} were all on the call.",
    "invited: {FN}, {FN}, {FN} and {FN}",
    "A book by {P} about growing up in {C}.",
    "Meet at the junction of {SN} and {SN}.",
    "Their shop is on {SN}, opposite the pharmacy.",
    "Pick me up from {A} at {TIME}.",
    "Previous address {A}; current address {A}.",
    "Ask {LN} whether the transfer went out.",
    "{P} ({AGE}) was born in {C}.",
    "Thanks to {FN} and the team in {C}.",
    "Chief economist {P} told reporters the rate cut would come in {DATE}.",
    "Spokesperson {P} declined to comment.",
    "In an interview, {P} said the bank had ignored her complaints.",
    "{FN} replied to {FN}: \"I sent it yesterday.\"",
    "the {LN} report was filed late",
    "friends know me as {FN}",
    "{P}, director of finance at {ORG}, signed the letter.",
    "Witness statement by {P}, taken at {A1} on {DATE}.",
]
NEGATIVE = [
    "Your card ending {L4} was used at {M} for {AMT}.",
    "We will never ask for your PIN or one-time passcode.",
    "Payment of {AMT} to {M} declined: insufficient funds.",
    "Thank you for contacting Customer Service. A member of the Fraud Team will reply shortly.",
    "Refund processed for order {REF}. Allow 3-5 Business Days.",
    "Your {COUR} parcel could not be delivered. Pay the redelivery fee now.",
    "Reminder: Direct Debit to {M} of {AMT} on {DATE}.",
    "Chargeback Reason Code 4837 - No Cardholder Authorization.",
    "Two-Factor Authentication was enabled on your account at {TIME}.",
    "Velocity rule triggered: 7 payments in 10 minutes at {M}.",
    "ok thanks",
    "Is the Main Branch open on Saturday?",
    "SEPA Instant Credit Transfer received: {AMT}.",
    "Monthly Statement Available - Visa Platinum",
    "Account {ACC}, sort code {SORT}, was frozen pending review.",
    "Sign-in from {IP} at {TIME}, device not recognised.",
    "Sort code and account number do not match.",
    "Card {CARD} valid thru 09/27 was declined twice.",
    "Please tap Continue. Profile Details and Security Settings can be changed later.",
    "The Consumer Credit Act and the Payment Services Regulations apply.",
    "Happy Holidays from all of us at Customer Care!",
    "Click Verify Now to keep your Online Banking active.",
    "{IP} made 14 sign-in attempts in 30 minutes.",
    "OTP sent to the registered mobile; customer did not receive it.",
    "Courier notice: Delivery Failed. Reschedule Today.",
    "the app keeps crashing when i open payments, can someone help",
    "i never got the code, the text just says your payment is pending",
    "is this message about my refund real or a scam",
    "thank goodness the card was blocked in time",
    "the music on the advert is great btw",
    "Payee details changed to account {ACC} at sort code {SORT}.",
    "Risk Desk: suspicious activity on your Savings Account. Call Us Now.",
    "Wire of {AMT} to account {IBAN} held for review (new payee, first payment).",
    "Account Takeover risk score 0.93; Step-Up Authentication required.",
    "Dear Valued Customer, Your Account Has Been Suspended.",
    "Top Picks: Action & Adventure, Comedy, Kids & Family, Documentaries.",
    "Redeem Points Now and Unlock Premium Rewards.",
    "The album Midnight Harbour was a surprise hit, and Paper Lanterns followed a year later.",
    "She streamed Ocean Drive, then Silent Hills, then The Long Summer.",
    "Visitors should use the side entrance during the works.",
    "Honestly no idea why the payment bounced twice.",
    "Terms and Conditions, Privacy Policy and Cookie Settings were updated.",
    "Easter Monday and Boxing Day are bank holidays.",
    "Open Settings, tap Manage Apps and remove Remote Desktop Helper.",
    "the village was quiet, the shops closed early and the tram never came",
    "he kept getting confused with someone else, which annoyed him",
    "it was a decent jazz record, nothing more",
    "the farm had goats, donkeys and geese for the children",
    "System notice: repeated transaction detected.",
    "Customer Care, Fraud Prevention and Collections share one queue.",
    "Step 1: Tap Continue. Step 2: Enter Your Code. Step 3: Confirm.",
    "The Royal Mail strike delayed card deliveries across the North West.",
    "Ten Gadgets Nobody Needs But Everybody Buys",
    "Set aside a fifth for tax and send the rest.",
    "Routing code missing on the wire form.",
]
STYLES: dict[str, list[str]] = {"chat": CHAT, "email": EMAIL, "case_note": CASE, "kyc": KYC, "memo": MEMO,
                                "address": ADDRESS, "narrative": NARRATIVE, "negative": NEGATIVE}
STYLE_WEIGHTS = {"chat": 20, "email": 12, "case_note": 18, "kyc": 10, "memo": 12, "address": 10, "narrative": 16,
                 "negative": 12}
# counterfactual negatives (pii-gen-1.4): a share of the non-negative texts keep their template but get these
# non-identifying words in the name and address slots (places keep real names), unlabelled, so the model learns that a name-shaped
# context alone ("thanks ___", "Customer ___ called") is not a name. Role nouns, pronouns and desk names only.
CF_RATE = 0.3
CF_FILLERS = {
    "PERSON": ["the customer", "my son", "my daughter", "my husband", "my wife", "my mum", "my dad", "the caller",
               "our agent", "the agent", "someone", "a friend", "the courier", "him", "her", "them", "the landlord",
               "the team lead", "my niece", "my nephew", "support", "the manager", "the merchant", "the seller",
               "the buyer", "a colleague", "the holder", "the account holder", "the beneficiary", "the teller",
               "the investigator", "the victim", "Customer Services", "Fraud Team", "Card Services", "the Bank",
               "Branch Manager", "Support Desk", "Security", "the Duty Officer", "mate", "everyone", "all", "guys",
               "the sender", "the payee", "the recipient", "nobody", "the officer", "the solicitor", "the driver"],
    "STREET_ADDRESS": ["the branch", "home", "my old address", "the office", "the post office", "the usual address",
                       "the address on file", "work", "the depot", "the same place", "the shop", "the hotel",
                       "the new flat", "the Head Office", "Reception", "the Main Branch", "the front desk",
                       "the parcel locker", "my parents' place", "the counter"],
}
NATIONALITIES = ["Irish", "British", "German", "French", "Polish", "Nigerian", "Indian", "Brazilian", "Turkish",
                 "Dutch", "Spanish", "Italian", "Egyptian", "Chinese", "Filipino", "Canadian", "American"]

_SLOT = re.compile(r"\{([A-Z0-9]+)\}")
NER_LABEL = {"P": "PERSON", "P2": "PERSON", "FN": "PERSON", "TP": "PERSON", "LN": "PERSON", "SN": "STREET_ADDRESS",
             "A": "STREET_ADDRESS",
             "A1": "STREET_ADDRESS", "AB": "STREET_ADDRESS", "ST": "STREET_ADDRESS", "C": "GPE", "CO": "GPE",
             "CC": "GPE", "ORG": "ORG", "DATE": "DATE", "TIME": "TIME", "NAT": "NORP"}


class Generator:
    """One corpus: `Generator(seed).records(n)`."""

    def __init__(self, seed: int) -> None:
        from faker import Faker

        self.seed = int(seed)
        self.rng = random.Random(f"{GENERATOR_VERSION}:{self.seed}")
        self.fakers = {}
        for loc in LOCALES:
            f = Faker(loc)
            f.seed_instance(self.rng.randrange(2**31))
            self.fakers[loc] = f
        self.en = Faker("en_US")
        self.en.seed_instance(self.rng.randrange(2**31))
        self.styles = sorted(STYLES)
        self.weights = [STYLE_WEIGHTS[s] for s in self.styles]

    # ------------------------------------------------------------------------------------------- values
    def _faker(self):
        return self.fakers[self.rng.choice(LOCALES)]

    def _ascii_ok(self, s: str) -> bool:
        return all(ord(ch) < 0x250 or ch in "’" for ch in s)

    def first(self) -> str:
        r = self.rng.random()
        if r < 0.2:
            return self.rng.choice(EXTRA_FIRST)
        for _ in range(5):
            f = self._faker()
            n = f.first_name()
            if self._ascii_ok(n):
                return n
        return self.rng.choice(EXTRA_FIRST)

    def last(self) -> str:
        r = self.rng.random()
        if r < 0.12:
            p, names = self.rng.choice(PARTICLE_LAST)
            part = p if self.rng.random() < 0.85 else p.title()
            return f"{part} {self.rng.choice(names.split())}"
        if r < 0.24:
            p, names = self.rng.choice(HYPHEN_PREFIX)
            n = self.rng.choice(names.split())
            return f"{p}{n}" if p != "Fitz" else f"Fitz{n}"
        if r < 0.36:
            return self.rng.choice(EXTRA_LAST)
        for _ in range(5):
            n = self._faker().last_name()
            if self._ascii_ok(n):
                if self.rng.random() < 0.06:
                    m = self._faker().last_name()
                    if self._ascii_ok(m):
                        n = f"{n}-{m}"
                return n
        return self.rng.choice(EXTRA_LAST)

    def person(self, form: Optional[str] = None) -> str:
        """A name; title/salutation words are not part of it."""
        rng = self.rng
        first, last = self.first(), self.last()
        form = form or rng.choices(["fl", "fml", "fil", "lf", "il", "f", "ffl", "fls"],
                                   [55, 8, 6, 5, 7, 6, 8, 2])[0]
        if form == "fml":
            name = f"{first} {self.first()} {last}"
        elif form == "fil":
            name = f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        elif form == "lf":
            name = f"{last}, {first}" if rng.random() < 0.5 else f"{last.upper()} {first}"
        elif form == "il":
            name = f"{first[0]}. {last}" if rng.random() < 0.7 else f"{first[0]}.{rng.choice('ABCDEFGHJKLM')}. {last}"
        elif form == "f":
            name = first
        elif form == "ffl":
            name = f"{first}-{self.first()} {last}" if rng.random() < 0.4 else f"{first} {last} {self.last()}"
        elif form == "fls":
            name = f"{first} {last} {rng.choice(SUFFIXES)}"
        else:
            name = f"{first} {last}"
        return self._random_case(name, 0.07, 0.06)

    def title_person(self) -> tuple[str, str]:
        t = self.rng.choice(TITLES)
        n = self.last() if self.rng.random() < 0.6 else f"{self.first()} {self.last()}"
        return t, n

    def street(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            for _ in range(4):
                s = self._faker().street_address()
                if self._ascii_ok(s):
                    return s.replace("\n", ", ")
        n = str(rng.choice([rng.randint(1, 99), rng.randint(1, 999), rng.randint(1, 9999)]))
        if rng.random() < 0.1:
            n += rng.choice("abAB")
        if r < 0.6:
            w = self.last() if rng.random() < 0.5 else f"{self.first()} {self.last()}"
            w = w.split(", ")[0]
            t = rng.choice(STREET_TYPES)
            s = f"{n} {w} {t}" if rng.random() < 0.6 else f"{w} {t} {n}"
        elif r < 0.8:
            w = rng.choice(STREET_WORDS)
            if rng.random() < 0.2:
                w = f"{rng.choice(['Old', 'New', 'Upper', 'Lower', 'North', 'South', 'East', 'West', 'Great', 'Little'])} {w}"
            s = f"{n} {w} {rng.choice(STREET_TYPES)}"
        else:
            s = rng.choice(FOREIGN_STREETS).format(w=rng.choice(STREET_WORDS), n=n)
        if rng.random() < 0.15:
            unit = rng.choice(UNITS).format(n=rng.randint(1, 120), l=rng.choice("ABCD"))
            s = f"{unit}, {s}" if rng.random() < 0.4 else f"{s} {unit}"
        return s

    def street_name(self) -> str:
        """A street without a house number ("Harbour Road", "Kowalski Street")."""
        rng = self.rng
        if rng.random() < 0.4:
            for _ in range(3):
                f = self._faker()
                if hasattr(f, "street_name"):
                    v = f.street_name()
                    if self._ascii_ok(v):
                        return v
        w = rng.choice(STREET_WORDS) if rng.random() < 0.5 else self.last()
        return f"{w} {rng.choice(STREET_TYPES)}"

    def city(self) -> str:
        for _ in range(5):
            c = self._faker().city()
            if self._ascii_ok(c):
                return c
        return self.en.city()

    def postcode(self) -> str:
        for _ in range(3):
            f = self._faker()
            pc = getattr(f, "postcode", None) or getattr(f, "zipcode", None)
            if pc is not None:
                v = pc()
                if self._ascii_ok(v):
                    return v
        return self.en.zipcode()

    def address(self, form: str) -> str:
        rng = self.rng
        st, city = self.street(), self.city()
        if form == "ST":
            return st
        pc = self.postcode()
        state = ""
        if rng.random() < 0.25:
            f = self._faker()
            for attr in ("state_abbr", "state", "county", "region"):
                if hasattr(f, attr):
                    try:
                        state = getattr(f, attr)()
                    except Exception:  # noqa: BLE001 - some locales lack the data behind an attribute
                        state = ""
                    break
            if not self._ascii_ok(state):
                state = ""
        co = rng.choice(COUNTRIES) if rng.random() < 0.25 else ""
        if form == "AB" and rng.random() < 0.3:  # flattened / messy blocks: any separators, state and country lines
            seps = [rng.choice(["\n", ", ", " ", "\n, ", "  "]) for _ in range(4)]
            bits = [st, city] + ([state] if state else []) + ([co] if co else [])
            bits.insert(rng.randrange(2, len(bits) + 1), pc)
            out = bits[0]
            for i, b in enumerate(bits[1:]):
                out += seps[i % len(seps)] + b
            return out
        if form == "AB":
            lines = [st]
            if rng.random() < 0.5:
                lines.append(f"{city}{', ' + state if state else ''} {pc}".strip())
            else:
                lines.append(f"{pc} {city}")
            if co:
                lines.append(co)
            return "\n".join(lines)
        k = rng.randrange(7)
        if k == 6:
            a, b = (st if rng.random() < 0.5 else self.street_name()), self.street_name()
            return rng.choice([f"the corner of {a} and {b}", f"{a} at {b}", f"junction of {a} and {b}",
                               f"{a} / {b}", f"corner of {a} & {b}"])
        if k == 0:
            s = f"{st}, {city}"
        elif k == 1:
            s = f"{st}, {city} {pc}"
        elif k == 2:
            s = f"{st}, {pc} {city}"
        elif k == 3:
            s = f"{st} {city}{' ' + state if state else ''} {pc}"
        elif k == 4:
            s = f"{st}, {city}{', ' + state if state else ''}"
        else:
            s = st
        if co and k != 5:
            s = f"{s}, {co}"
        return self._random_case(s, 0.06, 0.06)

    def _random_case(self, s: str, p_lower: float, p_upper: float) -> str:
        """`s` lower-cased with probability p_lower, upper-cased with p_upper, else as is (one draw)."""
        r = self.rng.random()
        if r < p_lower:
            return s.lower()
        if r < p_lower + p_upper:
            return s.upper()
        return s

    def phone(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            return self._faker().phone_number()
        cc = rng.choice(["+353", "+44", "+49", "+33", "+1", "+34", "+31", "+48", "+91", "+234"])
        return f"{cc} {rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"

    def value(self, slot: str) -> tuple[str, list[tuple[str, int, int]]]:
        """(text, [(label, start, end)] within it) for one slot."""
        rng = self.rng
        lab = NER_LABEL.get(slot)
        if slot in ("P", "P2"):
            v = self.person()
        elif slot == "FN":
            v = self.person("f")
        elif slot == "TP":
            t, n = self.title_person()
            return f"{t} {n}", [("PERSON", len(t) + 1, len(t) + 1 + len(n))]
        elif slot in ("A", "A1", "AB", "ST"):
            v = self.address(slot if slot != "A" else rng.choice(["A1", "AB", "ST"]))
        elif slot == "LN":
            v = self.last()
            if rng.random() < 0.1:
                v = v.lower()
        elif slot == "SN":
            v = self.street_name()
        elif slot == "SORT":
            v = f"{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"
        elif slot == "ROUTING":
            v = str(rng.randint(10_000_000, 99_999_999)) + str(rng.randint(0, 9))
        elif slot == "C":
            v = self.city()
        elif slot == "CO":
            v = rng.choice(COUNTRIES)
        elif slot == "CC":
            c, co = self.city(), rng.choice(COUNTRIES)
            return f"{c}, {co}", [("GPE", 0, len(c)), ("GPE", len(c) + 2, len(c) + 2 + len(co))]
        elif slot == "ORG":
            v = self._faker().company()
            if not self._ascii_ok(v):
                v = self.en.company()
        elif slot == "NAT":
            v = rng.choice(NATIONALITIES)
        elif slot == "DATE":
            import datetime as _dt

            # absolute range from this generator's rng (Faker's relative "-60y" depends on the wall clock)
            d = _dt.date(1950, 1, 1) + _dt.timedelta(days=rng.randrange(28_000))
            v = d.strftime(rng.choice(["%d/%m/%Y", "%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%d.%m.%Y", "%b %Y"]))
        elif slot == "TIME":
            v = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}" if rng.random() < 0.7 else \
                f"{rng.randint(1, 12)}{rng.choice(['am', 'pm', ' a.m.', ' PM'])}"
        elif slot == "PH":
            v = self.phone()
        elif slot == "EM":
            v = self.en.user_name() + "@" + rng.choice(["gmail.com", "outlook.com", "yahoo.co.uk", "web.de",
                                                        "example.org", "icloud.com", "proton.me"])
        elif slot == "CARD":
            v = self.en.credit_card_number()
        elif slot == "L4":
            v = f"{rng.randint(0, 9999):04d}"
        elif slot == "IBAN":
            from pipeline.anonymize.validators import iban_valid

            for _ in range(8):  # some Faker locales emit IBANs of the wrong length: only valid ones are used
                v = self._faker().iban()
                if iban_valid(v):
                    break
            else:
                v = "DE89370400440532013000"
        elif slot == "BIC":
            v = self.en.swift(length=rng.choice([8, 11]))
        elif slot == "ACC":
            v = str(rng.randint(10_000_000, 99_999_999_999))
        elif slot == "AMT":
            v = rng.choice(["EUR {:.2f}", "£{:.2f}", "${:,.2f}", "{:.2f} EUR", "{:.0f} euro", "€{:.2f}"]).format(
                rng.uniform(5, 9000))
        elif slot == "REF":
            v = rng.choice(["CASE", "TX", "REF", "INV", "ORD", "C"]) + rng.choice(["-", ""]) + str(rng.randint(1000, 999999))
        elif slot == "IP":
            v = self.en.ipv4_public()
        elif slot == "M":
            v = rng.choice(MERCHANTS_NEG)
        elif slot == "COUR":
            v = rng.choice(COURIERS)
        elif slot == "AGE":
            v = str(rng.randint(18, 90))
        else:
            raise KeyError(slot)
        return v, ([(lab, 0, len(v))] if lab else [])

    # ------------------------------------------------------------------------------------------- records
    def record(self) -> dict[str, Any]:
        rng = self.rng
        style = rng.choices(self.styles, self.weights)[0]
        template = rng.choice(STYLES[style])
        cf = style != "negative" and rng.random() < CF_RATE  # counterfactual: name/address slots unfilled
        case = "as_is"
        if style == "chat" and rng.random() < 0.25:
            case = "lower"
        elif style in ("memo", "case_note") and rng.random() < 0.15:
            case = "upper"
        parts: list[str] = []
        spans: list[dict[str, Any]] = []
        slots: list[list[int]] = []
        pos = 0
        last = 0
        for m in _SLOT.finditer(template):
            lit = template[last:m.start()]
            lit = _case(lit, case)
            parts.append(lit)
            pos += len(lit)
            cf_label = NER_LABEL.get(m.group(1)) if cf else None
            if cf_label in CF_FILLERS:
                v, labs = rng.choice(CF_FILLERS[cf_label]), []
            else:
                v, labs = self.value(m.group(1))
            v2 = _case(v, case)
            if len(v2) != len(v):  # a case change that alters length (e.g. German sharp s): keep as is
                v2 = v
            parts.append(v2)
            slots.append([pos, pos + len(v2), m.group(1)])
            for lab, s, e in labs:
                spans.append({"type": lab, "start": pos + s, "end": pos + e})
            pos += len(v2)
            last = m.end()
        tail = _case(template[last:], case)
        parts.append(tail)
        text = "".join(parts)
        return {"style": style, "text": text, "spans": spans, "slots": slots}

    def records(self, n: int) -> list[dict[str, Any]]:
        return [self.record() for _ in range(int(n))]


IDENTIFIER_SLOTS = {"PH": "PHONE_NUMBER", "EM": "EMAIL_ADDRESS", "CARD": "CREDIT_CARD", "IBAN": "IBAN_CODE",
                    "BIC": "SWIFT_CODE", "ACC": "US_BANK_NUMBER", "IP": "IP_ADDRESS"}


def eval_spans(record: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Gold spans for evaluation: PERSON / STREET_ADDRESS / GPE / ORG / DATE / TIME / NORP + identifier slots."""
    out = [(s["type"], s["start"], s["end"]) for s in record["spans"]]
    out += [(IDENTIFIER_SLOTS[x[2]], x[0], x[1]) for x in record["slots"] if x[2] in IDENTIFIER_SLOTS]
    return out


def _case(s: str, case: str) -> str:
    if case == "lower":
        return s.lower()
    if case == "upper":
        return s.upper()
    return s


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` records for `seed`, identical in every process: some Faker locales draw from sets, whose order follows
    Python's per-process hash seed, so the corpus is generated under PYTHONHASHSEED=0 (a child process when this
    one runs under another hash seed)."""
    import os

    if os.environ.get("PYTHONHASHSEED") == "0":
        return Generator(seed).records(n)
    import subprocess
    import sys

    code = ("import json, sys\nfrom pipeline.anonymize.learned.generate import Generator\n"
            "json.dump(Generator(int(sys.argv[2])).records(int(sys.argv[1])), sys.stdout, ensure_ascii=True)")
    r = subprocess.run([sys.executable, "-c", code, str(int(n)), str(int(seed))], capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
    if r.returncode != 0:
        from pipeline.errors import ConfigError

        tail = (r.stderr or "").strip().splitlines()[-1:] or ["?"]
        raise ConfigError(f"PII training-data generator failed ({tail[0][:200]})")
    return json.loads(r.stdout)


def corpus_sha256(records: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps({"text": r["text"], "spans": r["spans"]}, ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- disjointness
def _skeleton(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for s, e in sorted(spans):
        if s < last:
            continue
        out.append(text[last:s])
        out.append("\x00")
        last = e
    out.append(text[last:])
    return re.sub(r"\s+", " ", "".join(out)).strip().lower()


def template_skeletons() -> set[str]:
    """This module's templates with slots masked (lower-case, whitespace folded)."""
    return {re.sub(r"\s+", " ", _SLOT.sub("\x00", t)).strip().lower() for ts in STYLES.values() for t in ts}


def disjointness_report(records: list[dict[str, Any]], eval_rows: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Evaluation texts whose text occurs verbatim in `records`, and whose skeleton (labelled spans masked) equals
    a skeleton of this module's templates or of a generated text."""
    from pipeline.anonymize.eval_set import build as eval_build

    texts = {r["text"] for r in records}
    gen_sk = {_skeleton(r["text"], [(x[0], x[1]) for x in r["slots"]]) for r in records} | template_skeletons()
    eval_tpl = {re.sub(r"\s+", " ", re.sub(r"\{[A-Z_0-9]+\}", "\x00", t)).strip().lower()
                for t in eval_build.EVAL_TEMPLATES}
    n = verbatim = skel = 0
    for row in eval_rows:
        n += 1
        verbatim += row["text"] in texts
        skel += _skeleton(row["text"], [(s["start"], s["end"]) for s in row["spans"]]) in gen_sk
    return {"eval_texts": n, "verbatim_in_corpus": verbatim, "skeleton_in_corpus": skel,
            "shared_templates_with_eval_build": len(eval_tpl & template_skeletons())}
