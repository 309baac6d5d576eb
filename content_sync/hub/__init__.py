"""The central hub: publishes release trees and receives every box's statistics."""
