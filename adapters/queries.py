"""Saved cross-source SPARQL queries over fused adapter data (L3.4), in the form of graph.queries.

`results-with-valid-conditions` joins three sources in one question: test results from a LIMS, calibrations
of the instrument (equipment management or LIMS), and room readings from IoT sensors, against the environment
limits the hub holds (graph `environment-limits`). A result qualifies when it was measured with the
instrument while a calibration of it (not failed) was valid over the whole test window, and no reading of a
limited quantity in its room during that window was outside the room's limit (limits tied to a method apply
only to results of that method). Readings in a unit other than the limit's are not compared. A window is
[qh:startedAt, sosa:resultTime], or the `defaultMinutes` before sosa:resultTime when the LIMS gave no start.
`requireReadings` (default true) also demands at least one reading in the room during the window, so a room
with no sensor data does not count as "within limits".

`ADAPTER_QUERIES` joins the graph's own saved queries in the API's catalogue (api/routers/queries.py): the
`/api/v1/queries/{name}` endpoint runs it over the union of the named graphs.
"""

from graph.queries import ParameterKind, QueryParameter, SavedQuery

RESULTS_WITH_VALID_CONDITIONS = SavedQuery(
    name="results-with-valid-conditions",
    title="Results measured with an instrument while its calibration was valid and the room stayed within limits",
    description=(
        "Cross-source (LIMS results, calibration events, IoT room readings, environment limits): every test result "
        "measured with `instrument` during a valid, not failed calibration of it, whose room stayed within the "
        "environment limits that apply to the result's method over the test window. The window is "
        "[startedAt, resultTime], or the `defaultMinutes` before resultTime without a start."
    ),
    parameters=[
        QueryParameter(name="instrument", kind=ParameterKind.iri, required=True, description="Instrument IRI."),
        QueryParameter(
            name="defaultMinutes",
            kind=ParameterKind.integer,
            default="60",
            description="Test duration assumed when a result has no start time.",
        ),
        QueryParameter(
            name="requireReadings",
            kind=ParameterKind.string,
            default="true",
            description="'true': the room must have at least one reading in the window.",
        ),
    ],
    variables=[
        "result",
        "resultId",
        "sample",
        "testItem",
        "value",
        "unit",
        "startedAt",
        "measuredAt",
        "room",
        "calibration",
        "certificateNumber",
        "validUntil",
        "readings",
    ],
    body="""
SELECT ?result ?resultId ?sample ?testItem ?value ?unit ?startedAt ?measuredAt ?room ?calibration
       ?certificateNumber ?validUntil (COUNT(DISTINCT ?reading) AS ?readings)
WHERE {
  #PARAMETERS#
  ?result a qh:TestResult ; sosa:madeBySensor ?instrument ; sosa:resultTime ?measuredAt ;
          sosa:hasFeatureOfInterest ?sample ; qh:room ?room .
  OPTIONAL { ?result dcterms:identifier ?resultId }
  OPTIONAL { ?result sosa:observedProperty/rdfs:label ?testItem }
  OPTIONAL { ?result sosa:hasResult ?resultValue . ?resultValue qh:lexicalValue ?value .
             OPTIONAL { ?resultValue qh:ucumCode ?unit } }
  OPTIONAL { ?result sosa:usedProcedure ?method }
  OPTIONAL { ?result qh:startedAt ?givenStart }
  BIND (COALESCE(?givenStart,
                 ?measuredAt - xsd:dayTimeDuration(CONCAT("PT", STR(?defaultMinutes), "M"))) AS ?startedAt)
  ?calibration a qh:CalibrationEvent ; qh:calibratedInstrument ?instrument ;
               qh:validFrom ?validFrom ; qh:validUntil ?validUntil .
  OPTIONAL { ?calibration qh:certificateNumber ?certificateNumber }
  FILTER (?validFrom <= ?startedAt && ?measuredAt <= ?validUntil)
  FILTER NOT EXISTS { ?calibration qh:state qh:calibrationResult-fail }
  FILTER NOT EXISTS {
    ?limit a qh:EnvironmentLimit ; qh:room ?room ; qh:limitedProperty ?property ; qh:ucumCode ?limitUnit .
    OPTIONAL { ?limit qh:method ?limitMethod }
    FILTER (!BOUND(?limitMethod) || (BOUND(?method) && ?limitMethod = ?method))
    ?bad a qh:EnvironmentObservation ; sosa:hasFeatureOfInterest ?room ; sosa:observedProperty ?property ;
         sosa:resultTime ?badTime ; sosa:hasResult ?badValue .
    ?badValue qudt:numericValue ?v ; qh:ucumCode ?limitUnit .
    FILTER (?badTime >= ?startedAt && ?badTime <= ?measuredAt)
    OPTIONAL { ?limit qh:minimum ?minimum }
    OPTIONAL { ?limit qh:maximum ?maximum }
    FILTER ((BOUND(?minimum) && ?v < ?minimum) || (BOUND(?maximum) && ?v > ?maximum))
  }
  OPTIONAL {
    ?reading a qh:EnvironmentObservation ; sosa:hasFeatureOfInterest ?room ; sosa:resultTime ?readingTime .
    FILTER (?readingTime >= ?startedAt && ?readingTime <= ?measuredAt)
  }
}
GROUP BY ?result ?resultId ?sample ?testItem ?value ?unit ?startedAt ?measuredAt ?room ?calibration
         ?certificateNumber ?validUntil ?requireReadings
HAVING (?requireReadings != "true" || COUNT(DISTINCT ?reading) > 0)
ORDER BY ?measuredAt ?result
""",
)

ADAPTER_QUERIES: dict[str, SavedQuery] = {RESULTS_WITH_VALID_CONDITIONS.name: RESULTS_WITH_VALID_CONDITIONS}
