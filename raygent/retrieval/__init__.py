"""raygent.retrieval: embedders, lexical and faiss indexes, the tool retriever and knowledge QA.

See docs/retrieval.md. Heavy libraries (faiss, bm25s, wordllama, scikit-learn, jieba, pypdf) are
imported on first use, so importing this package is cheap.
"""

from raygent.retrieval.embedders import (
    DashScopeEmbedder,
    Embedder,
    EmbedderError,
    MiniLMEmbedder,
    TransformersEmbedder,
    WordLlamaEmbedder,
    get_embedder,
)
from raygent.retrieval.expand import ExampleCache, expand_tools
from raygent.retrieval.knowledge import KnowledgeChunk, KnowledgeRetriever, KnowledgeSearchTool
from raygent.retrieval.search import Hit, SearchIndex
from raygent.retrieval.tool_retriever import ToolRetriever, tool_text
from raygent.retrieval.vector_index import VectorIndex

__all__ = ["Embedder", "EmbedderError", "WordLlamaEmbedder", "TransformersEmbedder", "MiniLMEmbedder",
           "DashScopeEmbedder",
           "get_embedder", "SearchIndex", "Hit", "VectorIndex", "ToolRetriever", "tool_text", "KnowledgeRetriever",
           "KnowledgeChunk", "KnowledgeSearchTool", "ExampleCache", "expand_tools"]
