"""Regenerate the two derived QUDT files in this folder from the upstream QUDT vocabularies.

Usage: python ontologies/vendor/derive_qudt_subsets.py <folder holding VOCAB_QUDT-UNITS-ALL.ttl and
VOCAB_QUDT-QUANTITY-KINDS-ALL.ttl>. The output is sorted Turtle, so a rerun on the same
input gives byte-identical files (reviewable diffs).
"""

import sys
from pathlib import Path

import pyoxigraph as ox

HERE = Path(__file__).resolve().parent
HEADER = """# DERIVED SUBSET (not an upstream file) of {source} from QUDT (qudt.org), qudt/qudt-public-repo
# @ 8b9168d29ab49142be1739bc54078c9320273e79. Licence: CC BY 4.0, attribution to QUDT.org; UCUM codes are
# subject to the UCUM terms of use. Changes: {changes}
# Regenerate with ontologies/vendor/derive_qudt_subsets.py (the SPARQL CONSTRUCT is in that script).
"""

PREFIXES = {
    "qudt": "http://qudt.org/schema/qudt/",
    "unit": "http://qudt.org/vocab/unit/",
    "quantitykind": "http://qudt.org/vocab/quantitykind/",
    "qkdv": "http://qudt.org/vocab/dimensionvector/",
    "si-unit": "https://si-digital-framework.org/SI/units/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}

UNITS_QUERY = """
PREFIX qudt: <http://qudt.org/schema/qudt/>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
CONSTRUCT {
  ?u a qudt:Unit ; rdfs:label ?label ; qudt:symbol ?symbol ; qudt:ucumCode ?ucum ;
     qudt:hasDimensionVector ?dv ; qudt:conversionMultiplier ?m ; qudt:conversionOffset ?o ;
     qudt:unitForQuantityKind ?qk ; qudt:siExactMatch ?si .
} WHERE {
  ?u a qudt:Unit ; qudt:hasDimensionVector ?dv ; qudt:conversionMultiplier ?m .
  FILTER NOT EXISTS { ?u qudt:deprecated true }
  OPTIONAL { ?u rdfs:label ?label FILTER(lang(?label) = "en") }
  OPTIONAL { ?u qudt:symbol ?symbol }
  OPTIONAL { ?u qudt:ucumCode ?ucum }
  OPTIONAL { ?u qudt:conversionOffset ?o FILTER(?o != 0) }
  OPTIONAL { ?u qudt:unitForQuantityKind ?qk }
  OPTIONAL { ?u qudt:siExactMatch ?si }
}"""

QUANTITY_KINDS_QUERY = """
PREFIX qudt: <http://qudt.org/schema/qudt/>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
PREFIX skos: <http://www.w3.org/2004/02/skos/core#>
CONSTRUCT {
  ?k a qudt:QuantityKind ; rdfs:label ?label ; qudt:hasDimensionVector ?dv ; skos:broader ?broader .
} WHERE {
  ?k a qudt:QuantityKind .
  FILTER NOT EXISTS { ?k qudt:deprecated true }
  OPTIONAL { ?k rdfs:label ?label FILTER(lang(?label) = "en") }
  OPTIONAL { ?k qudt:hasDimensionVector ?dv }
  OPTIONAL { ?k skos:broader ?broader }
}"""


def _derive(source: Path, query: str, target: Path, changes: str) -> int:
    store = ox.Store()
    store.bulk_load(path=str(source), format=ox.RdfFormat.TURTLE)
    triples = sorted(set(store.query(query)), key=str)
    body = ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES)
    target.write_bytes(HEADER.format(source=source.name, changes=changes).encode() + body)
    return len(triples)


def main(folder: Path) -> None:
    """Write qudt-units.ttl and qudt-quantitykinds.ttl beside this script."""
    units = _derive(
        folder / "VOCAB_QUDT-UNITS-ALL.ttl",
        UNITS_QUERY,
        HERE / "qudt-units.ttl",
        "non-deprecated units with a dimension vector and multiplier, reduced to the properties the hub uses.",
    )
    kinds = _derive(
        folder / "VOCAB_QUDT-QUANTITY-KINDS-ALL.ttl",
        QUANTITY_KINDS_QUERY,
        HERE / "qudt-quantitykinds.ttl",
        "non-deprecated quantity kinds with English label, dimension vector and skos:broader only.",
    )
    print(f"qudt-units.ttl: {units} triples; qudt-quantitykinds.ttl: {kinds} triples")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
