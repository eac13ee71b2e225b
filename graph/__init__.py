"""The knowledge graph: ontology mapping of certificates, standards and conformity data; RDF stores; SPARQL."""
