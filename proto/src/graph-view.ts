/** The limits of a graph view, as GraphViewRequest in the .proto states them. */

/** Nodes a view may hold when the request says 0; the most a request may ask for. */
export const VIEW_DEFAULT_NODES = 2_000;
export const VIEW_MAX_NODES = 100_000;
/** Steps an `around` walk takes when the request says 0; the most a request may ask for. */
export const VIEW_DEFAULT_DEPTH = 2;
export const VIEW_MAX_DEPTH = 100;
