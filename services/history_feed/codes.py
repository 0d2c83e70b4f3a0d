"""Code shapes and small code tables of the AMO nomenclatures.

Shapes are checked, not membership in the full nomenclatures (CIP, CCAM,
NABM and LPP lists change monthly and belong to the AMO): a malformed code is
refused, an unknown but well-formed one is kept. NGAP keys are a short stable
list, so they are checked by membership.
"""

from __future__ import annotations

import re

CIP13 = re.compile(r"\d{13}")
UCD = re.compile(r"\d{7}|\d{13}")
#: ATC at levels 1 to 5 (A, A10, A10B, A10BA, A10BA02); anatomical groups only.
ATC = re.compile(r"[ABCDGHJLMNPRSV](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?")
#: Classes of the AMO drug base outside the WHO ATC (W99: homeopathy, unclassified).
AMO_PSEUDO_ATC = frozenset({"W99"})
CCAM = re.compile(r"[A-Z]{4}\d{3}")
#: NABM codes are 4 digits; AMO feeds drop the leading zeros (552 for 0552).
NABM = re.compile(r"\d{1,4}")
LPP = re.compile(r"\d{7}")
GHS = re.compile(r"\d{4}")
FINESS = re.compile(r"(?:\d{2}|2A|2B)\d{7}")
ADELI = re.compile(r"(?:\d{2}|2A|2B)\d{7}")
AM_NUMBER = re.compile(r"\d{9}")

#: Length of an ATC code at each level (1 anatomical group … 5 substance).
ATC_LEVEL_LENGTHS = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}

#: NGAP key letters (lettres clés) billed by professionals and institutions.
NGAP_KEYS = frozenset(
    {
        # Physicians: consultations, visits, expertise, technical acts.
        "C", "CS", "CSC", "CNP", "CCP", "G", "GS", "V", "VG", "VS", "VL", "VSP", "APC",
        "APV", "APY", "TC", "TCG", "TE1", "TE2", "K", "KC", "KE", "Z", "ZM", "ZN",
        "ADE", "ADI", "ADA", "ATM", "ACO", "ADC", "MCG", "MCS", "MPC", "MTX", "MIS",
        "MEG", "MCU", "MU", "MN", "MM", "MD", "MDN", "MDI", "MDD", "ID", "IK", "IFD",
        "IFI", "IKM", "IKS", "F", "FTN", "FTR", "SF", "SFI",
        # Nurses, physiotherapists, speech therapists, orthoptists, podiatrists.
        "AMI", "AMX", "AIS", "DI", "BSA", "BSB", "BSC", "AMK", "AMC", "AMS", "RKD",
        "AMO", "AMY", "POD", "ORT", "TLS", "TLD", "TLL",
        # Midwives, dentists, pharmacists, biology.
        "SP", "SPC", "C2", "TO", "DC", "SC", "TMI", "B", "PB", "KB", "TB",
    }
)  # fmt: skip

#: ATC anatomical main groups (level 1), for group labels.
ATC_LEVEL1_LABELS = {
    "A": "Voies digestives et métabolisme",
    "B": "Sang et organes hématopoïétiques",
    "C": "Système cardio-vasculaire",
    "D": "Médicaments dermatologiques",
    "G": "Système génito-urinaire et hormones sexuelles",
    "H": "Hormones systémiques, hormones sexuelles exclues",
    "J": "Anti-infectieux généraux à usage systémique",
    "L": "Antinéoplasiques et immunomodulateurs",
    "M": "Muscle et squelette",
    "N": "Système nerveux",
    "P": "Antiparasitaires, insecticides et répellants",
    "R": "Système respiratoire",
    "S": "Organes sensoriels",
    "V": "Divers",
}

#: A few frequent ATC classes (levels 2 to 4), for group labels.
ATC_CLASS_LABELS = {
    "A02": "Médicaments pour les troubles de l'acidité",
    "A02B": "Médicaments pour l'ulcère peptique et le reflux gastro-œsophagien",
    "A10": "Médicaments du diabète",
    "A10B": "Hypoglycémiants, insulines exclues",
    "B01": "Antithrombotiques",
    "B01A": "Antithrombotiques",
    "C07": "Bêtabloquants",
    "C07A": "Bêtabloquants",
    "C09": "Médicaments agissant sur le système rénine-angiotensine",
    "C09A": "Inhibiteurs de l'enzyme de conversion, non associés",
    "C10": "Agents modifiant les lipides",
    "C10A": "Hypolipémiants, non associés",
    "H03": "Médicaments de la thyroïde",
    "H03A": "Préparations thyroïdiennes",
    "J01": "Antibactériens à usage systémique",
    "J01C": "Bêta-lactamines, pénicillines",
    "J07": "Vaccins",
    "M01": "Anti-inflammatoires et antirhumatismaux",
    "M01A": "Anti-inflammatoires et antirhumatismaux non stéroïdiens",
    "N02": "Analgésiques",
    "N02B": "Autres analgésiques et antipyrétiques",
    "N05": "Psycholeptiques",
    "N05B": "Anxiolytiques",
    "N06": "Psychoanaleptiques",
    "N06A": "Antidépresseurs",
    "R03": "Médicaments pour les syndromes obstructifs des voies aériennes",
    "R06": "Antihistaminiques à usage systémique",
}


def ean13_ok(code: str) -> bool:
    """EAN-13 check digit (CIP13 codes are EAN-13 numbers starting with 340)."""
    total = 0
    for index in range(12):
        digit = ord(code[index]) - 48
        total += digit * 3 if index % 2 else digit
    return (10 - total % 10) % 10 == ord(code[12]) - 48


def atc_class_label(code: str) -> str:
    if len(code) == 1:
        return ATC_LEVEL1_LABELS.get(code, "")
    return ATC_CLASS_LABELS.get(code, "")
