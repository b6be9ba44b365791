"""The GraphQL documents stash2plex sends to Stash. The test emulator supports exactly this subset."""

SCENE_FIELDS = """
    id
    title
    code
    details
    date
    rating100
    organized
    updated_at
    studio { id name }
    performers { id name image_path }
    tags { id name }
    files { path basename duration }
    paths { screenshot }
"""

FIND_SCENE = f"""
query FindScene($id: ID!) {{
  findScene(id: $id) {{{SCENE_FIELDS}  }}
}}
"""

FIND_SCENES_BY_IDS = f"""
query FindScenesByIds($ids: [ID!]) {{
  findScenes(ids: $ids, filter: {{per_page: -1}}) {{
    count
    scenes {{{SCENE_FIELDS}    }}
  }}
}}
"""

# Every scene, oldest id first, one page at a time.
FIND_SCENES_PAGE = f"""
query FindScenesPage($page: Int!, $perPage: Int!) {{
  findScenes(filter: {{page: $page, per_page: $perPage, sort: "id", direction: ASC}}) {{
    count
    scenes {{{SCENE_FIELDS}    }}
  }}
}}
"""

# Scenes updated after a timestamp, newest first, one page at a time (`StashClient._iter_updated_since`
# widens the cut-off by the widest UTC offset and filters precisely on the returned `updated_at`).
FIND_SCENES_UPDATED_SINCE = f"""
query FindScenesUpdatedSince($since: String!, $page: Int!, $perPage: Int!) {{
  findScenes(
    filter: {{page: $page, per_page: $perPage, sort: "updated_at", direction: DESC}}
    scene_filter: {{updated_at: {{value: $since, modifier: GREATER_THAN}}}}
  ) {{
    count
    scenes {{{SCENE_FIELDS}    }}
  }}
}}
"""

# Only ids and file paths: used by reconcile and doctor to sample the library cheaply.
FIND_SCENE_PATHS_PAGE = """
query FindScenePathsPage($page: Int!, $perPage: Int!) {
  findScenes(filter: {page: $page, per_page: $perPage, sort: "id", direction: ASC}) {
    count
    scenes { id updated_at files { path } }
  }
}
"""

PLUGIN_SETTINGS = """
query PluginSettings($include: [ID!]) {
  configuration { plugins(include: $include) }
}
"""

VERSION = """
query Version { version { version } }
"""
