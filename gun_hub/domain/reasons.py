"""Reasons a trader can act on: the stable code of every refusal or control reason, and
what to do about it in French and English.

A decision's ``<Reason code="...">`` carries one code and one text (contract section 4;
``schemas/decision.xsd`` gives a reason no language attribute and no second text), so the
decision XML keeps the contract's shape: its text says *which* document, in English, for
the clearance system. What a trader should *do* is looked up here by the code: the status
lookup (trader and officer listeners, ``gun-hub status``) adds each reason of the
current decision with its texts (:func:`explain_codes`). A code never changes meaning;
a new situation gets a new code.

Where the EU customs single window (EU CSW-CERTEX) has a code for the same fault, the
entry names it (``csw``): observed ones come from the published trader guidance listed in
docs/decisions.md; the others follow the CERTEX reservation-refusal table of the domain
notes and are marked inferred. Document codes are derived from the verdict and the
partner's own code (:func:`document_reason_code`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from gun_contract.model.decision import DocumentResult
from gun_contract.model.verdicts import Verdict
from gun_hub.domain.override import OVERRIDE_APPLIED, OVERRIDE_NOT_ACCEPTED
from gun_hub.domain.rollout import ADVISORY_ONLY, AUTHORITY_NOT_CONNECTED


class Alignment(StrEnum):
    """How sure the EU CSW-CERTEX code of an entry is."""

    OBSERVED = "observed"  # shown to declarants by the EU single window (trader guidance)
    INFERRED = "inferred"  # the same CERTEX refusal reason, not seen in published guidance
    NONE = "none"  # the hub's own code: the single window has none for this


@dataclass(frozen=True, slots=True)
class ReasonEntry:
    """One stable code: what it means and what to do, in French and English."""

    code: str
    en: str
    fr: str
    csw: str | None = None  # e.g. "CL110/05": EU CSW-CERTEX code list and code
    alignment: Alignment = Alignment.NONE

    def as_json(self) -> dict[str, str]:
        shown = {"code": self.code, "en": self.en, "fr": self.fr}
        if self.csw is not None:
            shown |= {"csw": self.csw, "csw_alignment": self.alignment.value}
        return shown


# -- document codes: the verdict, refined by the partner's CERTEX refusal code ---------

COMMODITY_CODE_MISMATCH = "COMMODITY_CODE_MISMATCH"
UNIT_MISMATCH = "UNIT_MISMATCH"
QUANTITY_NOT_VALIDATED = "QUANTITY_NOT_VALIDATED"
LINE_MISMATCH = "LINE_MISMATCH"
DESTINATION_MISMATCH = "DESTINATION_MISMATCH"
HOLDER_MISMATCH = "HOLDER_MISMATCH"
DOCUMENT_NOT_USABLE = "DOCUMENT_NOT_USABLE"
WRITE_OFF_EXISTS = "WRITE_OFF_EXISTS"

# (verdict, partner code) -> code. Only CERTEX reservation-refusal codes refine a verdict
# (adapters/base/certex.py maps them); a clearance code (write-off, deletion, give-back)
# never meets one of these pairs, and any other pair keeps the verdict as its code.
_REFINED: Mapping[tuple[Verdict, str], str] = {
    (Verdict.MISMATCH, "01"): DOCUMENT_NOT_USABLE,
    (Verdict.MISMATCH, "03"): COMMODITY_CODE_MISMATCH,
    (Verdict.MISMATCH, "07"): LINE_MISMATCH,
    (Verdict.MISMATCH, "08"): DESTINATION_MISMATCH,
    (Verdict.MISMATCH, "09"): HOLDER_MISMATCH,
    (Verdict.MISMATCH, "10"): UNIT_MISMATCH,
    (Verdict.MISMATCH, "11"): QUANTITY_NOT_VALIDATED,
    (Verdict.ALREADY_USED, "06"): WRITE_OFF_EXISTS,
}


def document_reason_code(result: DocumentResult) -> str:
    """The stable code of a document's result: its verdict, made precise by the
    partner's refusal code where one says more (a MISMATCH on the unit, for one)."""
    if result.partner_code is not None:
        refined = _REFINED.get((result.verdict, result.partner_code))
        if refined is not None:
            return refined
    return result.verdict.value


def document_reason_codes(verdict: Verdict) -> frozenset[str]:
    """Every code a document's result of ``verdict`` may read
    (:func:`document_reason_code`): the verdict's own, and each one a partner's code
    makes precise."""
    return frozenset({verdict.value, *(c for (v, _), c in _REFINED.items() if v is verdict)})


# -- the catalogue ---------------------------------------------------------------------

_ENTRIES = (
    ReasonEntry(
        Verdict.NOT_FOUND.value,
        "Document not found by the issuing administration: check the document code and "
        "reference you declared against the certificate, then lodge an amended declaration.",
        "Document introuvable auprès de l'administration qui le délivre : vérifiez le code "
        "et la référence déclarés par rapport au certificat, puis déposez une déclaration "
        "rectificative.",
        "CL568/328",
        Alignment.OBSERVED,
    ),
    ReasonEntry(
        Verdict.INVALID_STATUS.value,
        "The document is not in a usable status (not validated, cancelled, replaced, "
        "suspended or expired): ask the issuing administration to validate or replace it, "
        "then declare the valid reference.",
        "Le document n'est pas dans un état utilisable (non validé, annulé, remplacé, "
        "suspendu ou expiré) : demandez à l'administration qui l'a délivré de le valider "
        "ou de le remplacer, puis déclarez la référence valide.",
        "CL110/04",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        Verdict.ALREADY_USED.value,
        "The document is already used by other declarations: quote a document that still "
        "has a balance, or ask the issuing administration.",
        "Le document est déjà utilisé par d'autres déclarations : citez un document qui a "
        "encore un solde, ou contactez l'administration qui l'a délivré.",
        "CL110/02",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        WRITE_OFF_EXISTS,
        "This declaration already has a write-off on the document: do not lodge it again; "
        "contact the customs office if the goods have not left.",
        "Cette déclaration a déjà une imputation sur le document : ne la déposez pas à "
        "nouveau ; contactez le bureau de douane si les marchandises ne sont pas parties.",
        "CL110/06",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        Verdict.QUANTITY_INSUFFICIENT.value,
        "The quantity left on the document does not cover the quantity declared: declare "
        "no more than the balance, put the rest on another document, or ask the issuing "
        "administration to amend the document.",
        "La quantité restante sur le document ne couvre pas la quantité déclarée : "
        "déclarez au plus le solde, imputez le reste sur un autre document, ou demandez à "
        "l'administration qui l'a délivré de le modifier.",
        "CL110/05",
        Alignment.OBSERVED,
    ),
    ReasonEntry(
        COMMODITY_CODE_MISMATCH,
        "The commodity code declared is not one the document covers: correct the "
        "commodity code, or quote the document that covers these goods.",
        "Le code marchandise déclaré n'est pas couvert par le document : corrigez le code "
        "marchandise, ou citez le document qui couvre ces marchandises.",
        "CL110/03",
        Alignment.OBSERVED,
    ),
    ReasonEntry(
        UNIT_MISMATCH,
        "The quantity is declared in another unit than the document line's: declare it in "
        "the unit of the document line.",
        "La quantité est déclarée dans une autre unité que celle de la ligne du document : "
        "déclarez-la dans l'unité de la ligne du document.",
        "CL110/10",
        Alignment.OBSERVED,
    ),
    ReasonEntry(
        QUANTITY_NOT_VALIDATED,
        "The quantity could not be validated against the document: declare the document "
        "line number and the quantity with its unit.",
        "La quantité n'a pas pu être validée sur le document : déclarez le numéro de ligne "
        "du document et la quantité avec son unité.",
        "CL110/11",
        Alignment.OBSERVED,
    ),
    ReasonEntry(
        LINE_MISMATCH,
        "The document has no such line: declare the line number shown on the document.",
        "Le document n'a pas cette ligne : déclarez le numéro de ligne indiqué sur le document.",
        "CL110/07",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        DESTINATION_MISMATCH,
        "The country of destination differs from the document's: correct the country of "
        "destination, or quote the document issued for it.",
        "Le pays de destination diffère de celui du document : corrigez le pays de "
        "destination, ou citez le document délivré pour ce pays.",
        "CL110/08",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        HOLDER_MISMATCH,
        "The document was issued to another operator: quote a document issued to the "
        "declarant, or ask the issuing administration.",
        "Le document a été délivré à un autre opérateur : citez un document délivré au "
        "déclarant, ou contactez l'administration qui l'a délivré.",
        "CL110/09",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        DOCUMENT_NOT_USABLE,
        "This document cannot be used for this operation: check that the document code is "
        "the one the procedure requires and that you quoted the right document.",
        "Ce document ne peut pas servir à cette opération : vérifiez que le code document "
        "est celui que la procédure exige et que vous citez le bon document.",
        "CL110/01",
        Alignment.INFERRED,
    ),
    ReasonEntry(
        Verdict.MISMATCH.value,
        "The document does not match the declaration: compare the declared code, "
        "reference, line, quantity, unit and commodity code with the document and correct "
        "the declaration.",
        "Le document ne correspond pas à la déclaration : comparez le code, la référence, "
        "la ligne, la quantité, l'unité et le code marchandise déclarés avec le document, "
        "et corrigez la déclaration.",
    ),
    ReasonEntry(
        Verdict.UNAVAILABLE.value,
        # Said of every outcome it is on: a control (DEGRADED_MODE says so), a refusal
        # for another document, a release over an advisory silence (ADVISORY_ONLY). It
        # said "the goods go to documentary control" on all three (a review of degraded
        # mode, advice).
        "The issuing administration did not answer in time: this document was not "
        "checked automatically. Keep it ready for the customs office; the other reasons "
        "say whether the goods are held for it.",
        "L'administration qui délivre le document n'a pas répondu à temps : ce document "
        "n'a pas été contrôlé automatiquement. Tenez-le à la disposition du bureau de "
        "douane ; les autres motifs indiquent si les marchandises sont retenues pour lui.",
    ),
    ReasonEntry(
        Verdict.UNROUTED.value,
        "No administration checks this document code automatically: it is checked at the "
        "customs office; make sure the code is the right one.",
        "Aucune administration ne contrôle automatiquement ce code document : il est "
        "contrôlé au bureau de douane ; vérifiez que le code est le bon.",
    ),
    # -- the declaration as a whole --------------------------------------------------
    ReasonEntry(
        "DEGRADED_MODE",
        "Some documents could not be checked automatically: present them at the customs "
        "office for a documentary control.",
        "Certains documents n'ont pas pu être contrôlés automatiquement : présentez-les au "
        "bureau de douane pour un contrôle documentaire.",
    ),
    ReasonEntry(
        "DEADLINE",
        # Said of every outcome it is on: a control (DEGRADED_MODE says so), a refusal
        # for another document, advice on a pre-lodged version, a cancellation or a
        # release after a control whose deletion or write-off went unanswered. It said
        # "the documents are checked at the customs office instead" on all of them (a
        # review of degraded mode, advice).
        "An administration did not answer within the time allowed: the documents it was "
        "asked about were not checked automatically (each is listed with its own reason). "
        "The outcome of the decision and its other reasons say what follows for the goods.",
        "Une administration n'a pas répondu dans le délai : les documents qui lui ont été "
        "soumis n'ont pas été contrôlés automatiquement (chacun est signalé par son propre "
        "motif). Le résultat de la décision et ses autres motifs indiquent ce qu'il advient "
        "des marchandises.",
    ),
    ReasonEntry(
        OVERRIDE_APPLIED,
        "You declared mention 73000 on this goods item: instead of being refused, the goods "
        "go to documentary control; present the documents at the customs office. Every use "
        "of the mention is recorded and reviewed.",
        "Vous avez déclaré la mention 73000 sur cet article : au lieu d'un refus, les "
        "marchandises passent en contrôle documentaire ; présentez les documents au bureau "
        "de douane. Chaque usage de la mention est enregistré et contrôlé.",
    ),
    ReasonEntry(
        AUTHORITY_NOT_CONNECTED,
        "The administration that issued this document does not yet check it through the "
        "single window at this customs office: the goods go to documentary control; present "
        "the document at the office.",
        "L'administration qui a délivré ce document ne le contrôle pas encore par le guichet "
        "unique dans ce bureau de douane : les marchandises passent en contrôle "
        "documentaire ; présentez le document au bureau.",
    ),
    ReasonEntry(
        ADVISORY_ONLY,
        "The administration's check is advisory at this customs office for now: this "
        "result, a refusal or no answer in time, does not stop the goods. If it is a "
        "refusal, correct the document data before the check is enforced.",
        "Le contrôle de l'administration n'est pour l'instant qu'indicatif dans ce bureau de "
        "douane : ce résultat, un refus ou une absence de réponse dans le délai, n'arrête "
        "pas les marchandises. S'il s'agit d'un refus, corrigez les données du document "
        "avant que le contrôle ne devienne bloquant.",
    ),
    ReasonEntry(
        OVERRIDE_NOT_ACCEPTED,
        "Mention 73000 cannot cover this refusal (war material, for one): the declaration "
        "is refused; correct the document data and lodge an amended declaration.",
        "La mention 73000 ne peut pas couvrir ce refus (matériel de guerre, par exemple) : "
        "la déclaration est refusée ; corrigez les données du document et déposez une "
        "déclaration rectificative.",
    ),
    ReasonEntry(
        "SUPERSEDED",
        "A later version of this declaration arrived before this version was decided: "
        "this version is not released; the later version's decision is the one to follow. "
        "Nothing to do for this version.",
        "Une version ultérieure de cette déclaration est arrivée avant que celle-ci soit "
        "décidée : cette version n'est pas libérée ; suivez la décision de la version "
        "ultérieure. Rien à faire pour cette version.",
    ),
    ReasonEntry(
        "DECLARATION_TOO_LARGE_TO_DECIDE",
        "The declaration quotes too many documents for one decision: split it into "
        "several declarations.",
        "La déclaration cite trop de documents pour une seule décision : scindez-la en "
        "plusieurs déclarations.",
    ),
    # -- a declaration that could not be read (intake, XML_<kind>) -------------------
    ReasonEntry(
        "XML_OVERSIZED",
        "The declaration is larger than the hub accepts: split it into smaller ones.",
        "La déclaration dépasse la taille acceptée : scindez-la en déclarations plus petites.",
    ),
    ReasonEntry(
        "XML_EMPTY",
        "The declaration is empty: send it again with its content.",
        "La déclaration est vide : renvoyez-la avec son contenu.",
    ),
    ReasonEntry(
        "XML_ENCODING",
        "The declaration is not in an accepted character encoding: send it in UTF-8.",
        "La déclaration n'est pas dans un codage de caractères accepté : envoyez-la en UTF-8.",
    ),
    ReasonEntry(
        "XML_DTD_FORBIDDEN",
        "The declaration carries a DTD, which is refused: send it without one.",
        "La déclaration contient une DTD, ce qui est refusé : envoyez-la sans DTD.",
    ),
    ReasonEntry(
        "XML_MALFORMED",
        "The declaration is not well-formed XML: have your declaration software correct it "
        "and send it again.",
        "La déclaration n'est pas un XML bien formé : faites-la corriger par votre logiciel "
        "de déclaration et renvoyez-la.",
    ),
    ReasonEntry(
        "XML_TOO_DEEP",
        "The declaration nests elements deeper than the schema allows: send it as the "
        "schema describes.",
        "La déclaration imbrique des éléments plus profondément que le schéma ne le "
        "permet : envoyez-la conforme au schéma.",
    ),
    ReasonEntry(
        "XML_TOO_MANY_ELEMENTS",
        "The declaration holds more elements than the hub accepts: split it.",
        "La déclaration contient plus d'éléments que le hub n'en accepte : scindez-la.",
    ),
    ReasonEntry(
        "XML_XINCLUDE_FORBIDDEN",
        "The declaration uses XInclude, which is refused: send it as one document.",
        "La déclaration utilise XInclude, ce qui est refusé : envoyez-la en un seul document.",
    ),
    ReasonEntry(
        "XML_NAMESPACE",
        "The declaration is not in the namespace urn:gun-hub:declaration:v1: correct it and "
        "send it again.",
        "La déclaration n'est pas dans l'espace de noms urn:gun-hub:declaration:v1 : "
        "corrigez-la et renvoyez-la.",
    ),
    ReasonEntry(
        "XML_SCHEMA",
        "The declaration does not follow the declaration schema: correct the element the "
        "reason names and send it again.",
        "La déclaration ne respecte pas le schéma de déclaration : corrigez l'élément cité "
        "dans le motif et renvoyez-la.",
    ),
    ReasonEntry(
        "XML_VALUE",
        "A value of the declaration is not valid (a date that does not exist, for one): "
        "correct the element the reason names and send it again.",
        "Une valeur de la déclaration n'est pas valide (une date qui n'existe pas, par "
        "exemple) : corrigez l'élément cité dans le motif et renvoyez-la.",
    ),
)

# Families of codes that name a rule of their own (RISK.<rule id>, SAMPLING.<AUTHORITY>):
# targeting criteria, never shown to a trader (web/redaction.py), explained to officers.
_FAMILIES = (
    ReasonEntry(
        "RISK",
        "Selected for control by a customs risk rule: follow the customs office's instructions.",
        "Sélectionnée pour contrôle par une règle d'analyse de risque : suivez les "
        "instructions du bureau de douane.",
    ),
    ReasonEntry(
        "SAMPLING",
        "Selected for control by random sampling: follow the customs office's instructions.",
        "Sélectionnée pour contrôle par tirage aléatoire : suivez les instructions du "
        "bureau de douane.",
    ),
)

UNKNOWN = ReasonEntry(
    "UNKNOWN",
    "Contact the customs office, quoting this code.",
    "Contactez le bureau de douane en citant ce code.",
)

CATALOGUE: Mapping[str, ReasonEntry] = {entry.code: entry for entry in _ENTRIES}
_FAMILY: Mapping[str, ReasonEntry] = {entry.code: entry for entry in _FAMILIES}


def explain(code: str) -> ReasonEntry:
    """The entry of ``code`` (a family's for ``RISK.*`` and ``SAMPLING.*``; a generic one,
    under the code asked, for a code the catalogue does not know)."""
    entry = CATALOGUE.get(code)
    if entry is not None:
        return entry
    family = _FAMILY.get(code.split(".", 1)[0]) if "." in code else None
    chosen = family or UNKNOWN
    return ReasonEntry(code, chosen.en, chosen.fr, chosen.csw, chosen.alignment)


# On a cancellation (a cancelled version: its reservations deleted; an invalidated one:
# its write-offs given back), a silent partner leaves that unconfirmed, not a document
# unchecked: the texts of a
# check ("not checked automatically", "keep it ready for the customs office") had no use
# for a cancelled declaration (stop 58's open item).
_ON_CANCELLATION: Mapping[str, tuple[str, str]] = {
    Verdict.UNAVAILABLE.value: (
        "The issuing administration did not answer in time: it has not confirmed yet that "
        "this document holds nothing more for this declaration (its reservation lifted, "
        "or what was written off given back). The cancellation stands; if the document still "
        "shows the quantity taken, ask the administration.",
        "L'administration qui délivre le document n'a pas répondu à temps : elle n'a pas "
        "encore confirmé que ce document ne porte plus rien de cette déclaration (sa "
        "réservation levée, ou l'imputation restituée). L'annulation est acquise ; si le document "
        "affiche encore la quantité prise, adressez-vous à l'administration.",
    ),
    "DEADLINE": (
        "An administration did not answer within the time allowed: it has not confirmed "
        "yet that the documents it was asked about hold nothing more for this declaration "
        "(a reservation lifted, a write-off given back; each document is listed with its "
        "own reason). The cancellation stands.",
        "Une administration n'a pas répondu dans le délai : elle n'a pas encore confirmé "
        "que les documents qui lui ont été soumis ne portent plus rien de cette "
        "déclaration (réservation levée, imputation restituée ; chaque document est "
        "signalé par son propre motif). L'annulation est acquise.",
    ),
}


# Any other document's code on a cancellation is the partner's answer to the request to
# free the document of the declaration (a deletion, a give-back), refused: the texts of a
# lodging ("lodge an amended declaration", "quote a document that still has a balance",
# "correct the declaration") advised a trader whose declaration is cancelled to lodge it
# again (a review of stop 59). One text for them all, true of each; the code says which.
_REFUSED_ON_CANCELLATION = (
    "The issuing administration answered the cancellation's request on this document with "
    "this code instead of confirming it: check with it, quoting the code, that the document "
    "holds nothing more for this declaration. The cancellation stands.",
    "L'administration qui délivre le document a répondu à la demande d'annulation sur ce "
    "document par ce code au lieu de la confirmer : vérifiez auprès d'elle, en citant le "
    "code, que le document ne porte plus rien de cette déclaration. L'annulation est "
    "acquise.",
)
_NOT_ROUTED_ON_CANCELLATION = (
    "No administration checks this document code through the single window: nothing was "
    "reserved on it here, nothing is to be lifted. The cancellation stands.",
    "Aucune administration ne contrôle ce code document par le guichet unique : rien n'y "
    "a été réservé ici, rien n'est à lever. L'annulation est acquise.",
)
_DOCUMENT_CODES = frozenset(
    code
    for verdict in Verdict
    if verdict not in (Verdict.VALID, Verdict.EXEMPT, Verdict.UNAVAILABLE, Verdict.UNROUTED)
    for code in document_reason_codes(verdict)
)


def _on_cancellation(code: str) -> tuple[str, str] | None:
    """The texts ``code`` reads on a CANCELLED decision, where they differ."""
    if code in _ON_CANCELLATION:
        return _ON_CANCELLATION[code]
    if code == Verdict.UNROUTED.value:
        return _NOT_ROUTED_ON_CANCELLATION
    if code in _DOCUMENT_CODES:
        return _REFUSED_ON_CANCELLATION
    return None


def explain_codes(codes: Iterable[str], outcome: str | None = None) -> list[dict[str, str]]:
    """Each distinct code, in order, with what to do (what the status lookup shows), as
    it reads on ``outcome`` (the decision's; on a cancellation the codes of the documents
    read as what the partners answered its deletions or give-backs: :func:`_on_cancellation`)."""
    seen: dict[str, None] = dict.fromkeys(code for code in codes if code)
    explained = []
    for code in seen:
        entry = explain(code)
        texts = _on_cancellation(code) if outcome == "CANCELLED" else None
        if texts is not None:
            entry = ReasonEntry(entry.code, *texts, entry.csw, entry.alignment)
        explained.append(entry.as_json())
    return explained
